"""What `archdsl train` sets up around `train()`: the process group under torchrun, the batch
source (an image folder or a synthetic pool), DDP, and the hint for out-of-range class indices."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from archdsl.errors import ArchError


@contextmanager
def distributed() -> Iterator[tuple[int, int]]:
    """(rank, world): under torchrun (WORLD_SIZE > 1), a gloo process group for the command."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1
        return
    import torch.distributed as torch_dist
    torch_dist.init_process_group("gloo")
    try:
        yield torch_dist.get_rank(), world
        torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()


def training_options(topo, data_dir, rank: int, world: int, options: dict, classes: int) -> dict:
    """`options` completed with the batch source and, under torchrun, the DDP wrapper; checks the
    batch against the loss first (before any progress bar is shown)."""
    from archdsl.topology.data import ImageFolderSource
    from archdsl.topology.train import check_batch, input_specs, synthetic_pool
    options = dict(options)
    if data_dir:
        options["source"] = ImageFolderSource(data_dir, input_specs(topo), seed=options["seed"],
                                              rank=rank, world=world)
    else:
        options["data"] = synthetic_pool(topo, classes=classes, seed=options["seed"])
    check_batch(topo.ir)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        options["model"] = DDP(topo, find_unused_parameters=len(topo.phases) > 1)
    return options


@contextmanager
def integer_inputs_hint(classes: int) -> Iterator[None]:
    """An index out of range while training on synthetic data is the data's fault, not a bug."""
    try:
        yield
    except IndexError as e:
        raise ArchError(f"a training step failed: {e}",
                        hint=f"integer inputs are drawn from range({classes}); pass --classes N "
                             f"no larger than the spec's class count") from None
