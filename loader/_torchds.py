"""The torch ``IterableDataset`` the workers run (a module-level class, so it pickles under
``spawn``/``forkserver`` as well as ``fork``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch.utils.data as tud


class WorkerDataset(tud.IterableDataset):  # type: ignore[type-arg]
    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[Any]:
        return iter(self.stream)
