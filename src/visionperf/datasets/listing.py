"""What every dataset reader returns: a root and the image files in the dataset's order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .synthetic import MARKER


@dataclass(frozen=True)
class ImageListing:
    root: Path
    files: tuple[str, ...]  # relative to root, in the dataset's own order

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return self.root / self.files[i]

    @property
    def synthetic(self) -> bool:
        """Made by `visionperf sample-data` (its marker file): accuracy on it means nothing."""
        return (self.root / MARKER).exists()
