"""The package version, importable by any stage without importing the API."""
__version__ = "0.1.0"
