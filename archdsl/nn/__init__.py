"""The torch side of the ops: every nn.Module and torch function they build or call (imports nothing else of archdsl)."""
