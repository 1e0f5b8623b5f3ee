"""Torch code of the ops: every nn.Module and torch function an op builds or calls (torch only)."""
