"""Export a compiled model: `files.py` writes .py, .pt2, .onnx and .safetensors files. The
standalone PyTorch source comes from `source.py` (`emit_python`), which puts together the
expressions and their printer (`expr.py`), the modules' constructor calls (`ctor.py`), archdsl's
helpers copied into the file (`helpers.py`), the scopes written as classes (`scopes.py`), their
forwards (`forward.py`), class generalisation (`classes.py`) and the init rules (`inits.py`)."""
from archdsl.export.files import (SUPPORTED_SUFFIXES, Exported, ExportNote, check_path, export,
                                  export_all)
from archdsl.export.source import emit_python

__all__ = ["export", "export_all", "check_path", "emit_python", "Exported", "ExportNote",
           "SUPPORTED_SUFFIXES"]
