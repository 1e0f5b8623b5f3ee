"""Lowering: the IR graph to a torch.fx GraphModule (imports torch)."""
