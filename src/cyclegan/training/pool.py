"""The history of generated images the discriminators learn from (paper Sec. 4; Shrivastava et al. 2017)."""

from __future__ import annotations

import random
from typing import Any

import torch

from .distributed import rank_seed


class ImagePool:
    """Remembers up to `size` generated images. Once full, each query returns an older image half of the time
    (and stores the new one in its place), so the discriminator does not chase the generator's latest output.

    The pool draws from its own random generator, whose state is part of `state_dict()`, so a resumed run makes
    the same choices an uninterrupted one would.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:  # 50: paper Sec. 4
        self.size = size
        self.seed = seed
        self.images: list[torch.Tensor] = []
        self._random = random.Random(seed)

    def for_rank(self, rank: int) -> ImagePool:
        """An empty pool of the same size for process `rank` of a distributed run, drawing from its own stream
        (the same pool on rank 0): each process keeps a history of the images it generated itself."""
        return ImagePool(self.size, rank_seed(self.seed, rank))

    def __len__(self) -> int:
        return len(self.images)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same size: the new images, some swapped for remembered ones."""
        if self.size == 0:
            return batch
        chosen = []
        for image in batch.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif self._random.random() > 0.5:
                slot = self._random.randrange(self.size)
                chosen.append(self.images[slot])
                self.images[slot] = image.clone()
            else:
                chosen.append(image)
        return torch.cat(chosen, 0)

    def drop_nonfinite(self) -> int:
        """Forget remembered images holding NaN or infinity (from a step that diverged and was skipped), which
        would otherwise poison the discriminator's later steps. Returns how many were dropped."""
        kept = [image for image in self.images if bool(torch.isfinite(image).all())]
        dropped, self.images = len(self.images) - len(kept), kept
        return dropped

    def state_dict(self) -> dict[str, Any]:
        images = torch.cat(self.images, 0).cpu() if self.images else torch.zeros(0)
        return {"images": images, "random_state": self._random.getstate()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        images = state["images"]
        self.images = [image.unsqueeze(0).to(device) for image in images] if images.numel() else []
        version, internal, gauss = state["random_state"]
        self._random.setstate((version, tuple(internal), gauss))
