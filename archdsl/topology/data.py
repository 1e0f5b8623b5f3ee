"""An image-folder data source for `archdsl train --data FOLDER`.

Layout (torchvision's ImageFolder): FOLDER/<class>/<image>.png|jpg|jpeg|bmp|webp; classes are
the sub-folders in sorted order, labels their indices. Each image is decoded with Pillow, made
RGB (or L for one-channel inputs), its shorter side resized to the input's size (bilinear) and
centred-cropped to the input's H × W, as a float tensor in [0, 1]: the raw images a topology
built with `views=true` makes its views from. The topology's inputs are fed by kind: float
[B, C, H, W] inputs get images (one batch of images for all of them), int64 [B] inputs the labels.

Batches: each epoch is a permutation of the images drawn from the source's own seeded
generator (the last incomplete global batch is dropped); under torch.distributed every rank
draws the same permutation and takes its own B of each global batch of B · world images.
`state_dict()` holds the generator, the permutation and the position, so a checkpoint resumes
the exact sequence of batches.
"""
from __future__ import annotations

from pathlib import Path

import torch

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class DataError(ValueError):
    """A folder or a topology this source cannot feed (the CLI reports it as an error)."""


def scan(folder: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """(image paths, labels, class names) of an image folder."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"--data {folder}: no such folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for k, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.suffix.lower() in EXTENSIONS and f.is_file():
                files.append(f)
                labels.append(k)
    if not files:
        raise DataError(f"--data {folder}: no images; expected FOLDER/<class>/<image>"
                        f"{'|'.join(EXTENSIONS)}")
    return files, labels, classes


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DataError("decoding images needs Pillow: pip install 'archdsl[data]' (or pillow)") from None
    return Image


def load_image(path: Path, channels: int, h: int, w: int) -> torch.Tensor:
    """[C, h, w] float in [0, 1]: shorter side resized to fit, then the centre cropped."""
    Image = _pillow()
    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        scale = max(h / im.height, w / im.width)
        size = (max(w, round(im.width * scale)), max(h, round(im.height * scale)))
        im = im.resize(size, Image.BILINEAR)
        left, top = (size[0] - w) // 2, (size[1] - h) // 2
        im = im.crop((left, top, left + w, top + h))
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return data.view(h, w, channels).permute(2, 0, 1).float() / 255.0


class ImageFolderSource:
    """Batches of a topology's inputs from an image folder (see the module doc)."""

    def __init__(self, folder, specs: list[tuple[str, tuple[int, ...], str]], seed: int = 0,
                 rank: int = 0, world: int = 1):
        _pillow()
        self.files, self.labels, self.classes = scan(folder)
        self.specs, self.rank, self.world = specs, rank, world
        images = [s for s in specs if s[2].startswith("float") and len(s[1]) == 4]
        if not images:
            raise DataError("the topology has no image input [B, C, H, W]; build it with `--set views=true` "
                            "where it takes one")
        fed = []
        for name, shape, dtype in specs:
            if dtype.startswith("float") and len(shape) == 4:
                fed.append(("image", shape))
            elif dtype == "int64" and len(shape) == 1:
                fed.append(("label", shape))
            else:
                raise DataError(f"input '{name}' {list(shape)} ({dtype}) is neither images [B, C, H, W] nor "
                                "labels [B]: an image folder cannot feed it (build the topology with "
                                "`--set views=true` where it makes its views from raw images)")
        self.fed = fed
        self.batch = images[0][1][0]
        if any(shape[0] != self.batch for _, shape in fed):
            raise DataError(f"every input needs one batch size, got {[list(s) for _, s in fed]}")
        if len(self.files) < self.batch * world:
            raise DataError(f"--data {folder}: {len(self.files)} images, fewer than one batch of "
                            f"{self.batch * world} ({self.batch} × {world} process(es))")
        self.g = torch.Generator().manual_seed(seed)
        self.perm, self.pos, self.epoch = torch.randperm(len(self.files), generator=self.g), 0, 0

    def _indices(self) -> list[int]:
        span = self.batch * self.world
        if self.pos + span > len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.files), generator=self.g), 0
            self.epoch += 1
        start = self.pos + self.rank * self.batch
        self.pos += span
        return self.perm[start:start + self.batch].tolist()

    def next(self) -> list[torch.Tensor]:
        idx = self._indices()
        out = []
        for kind, shape in self.fed:
            if kind == "label":
                out.append(torch.tensor([self.labels[i] for i in idx], dtype=torch.int64))
            else:
                out.append(torch.stack([load_image(self.files[i], shape[1], shape[2], shape[3]) for i in idx]))
        return out

    def state_dict(self) -> dict:
        return {"generator": self.g.get_state(), "perm": self.perm, "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.g.set_state(state["generator"])
        self.perm, self.pos, self.epoch = state["perm"], state["pos"], state["epoch"]
