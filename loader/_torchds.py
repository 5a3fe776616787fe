"""The torch ``Dataset`` the workers run (a module-level class, so it pickles under
``spawn``/``forkserver`` as well as ``fork``): the main process plans, the sampler hands each
worker a chunk of item ids, the worker does the per-sample work."""

from __future__ import annotations

from typing import Any

import torch.utils.data as tud


class WorkDataset(tud.Dataset):  # type: ignore[type-arg]
    def __init__(self, work: Any) -> None:
        self.work = work

    def __getitem__(self, sid: Any) -> Any:
        return self.work(tuple(sid))

    def __getitems__(self, sids: list[Any]) -> list[Any]:
        return [self.work(tuple(s)) for s in sids]
