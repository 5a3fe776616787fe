"""Checkpoints: model, optimizer, schedule step, RNG states and every rank's loader state.

Layout under the checkpoint root (a directory or any ``datalake`` store URI: ``file://``,
``s3://``)::

    step-00000100/model.pt      model state dict (incl. the MoE balance biases)
    step-00000100/optim.pt      optimizer state(s)
    step-00000100/extra.pt      RNG states (torch CPU, CUDA)
    step-00000100/state.json    step, config, determinism fields, loader states of all ranks
    step-00000100/MANIFEST.json sha256 and size of each file above -- written last

Each object is written atomically by the store (temp + rename on disk, one PUT on S3) and the
manifest goes last, so a checkpoint without its manifest does not exist: a run killed while
saving resumes from the previous one. Loading verifies every checksum. ``--resume`` refuses a
checkpoint whose determinism fields (``TrainConfig.determinism()``) differ from the config and
names each differing field.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import torch

from datalake.store import ObjectNotFound, open_store

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "check_compatible",
           "CKPT_FORMAT"]

CKPT_FORMAT = "mmlake-train-checkpoint"
_STEP_RE = re.compile(r"^step-(\d{8})/MANIFEST\.json$")


@dataclass
class Checkpoint:
    step: int
    model: dict[str, Any]
    optim: dict[str, Any]
    extra: dict[str, Any]
    state: dict[str, Any]
    where: str


def _blob(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(root: str, step: int, *, model: dict[str, Any], optim: dict[str, Any],
                    extra: dict[str, Any], state: dict[str, Any], keep: int = 0) -> str:
    """Write checkpoint ``step`` under ``root``; returns its location. Keeps the newest ``keep``."""
    store = open_store(root)
    name = f"step-{step:08d}"
    files = {"model.pt": _blob(model), "optim.pt": _blob(optim), "extra.pt": _blob(extra),
             "state.json": json.dumps({"format": CKPT_FORMAT, "version": 1, "step": step, **state},
                                      sort_keys=True).encode()}
    for fname, data in files.items():
        store.put(f"{name}/{fname}", data)
    manifest = {"format": CKPT_FORMAT, "version": 1, "step": step, "written": time.time(),
                "files": {k: {"sha256": hashlib.sha256(v).hexdigest(), "bytes": len(v)} for k, v in files.items()}}
    store.put(f"{name}/MANIFEST.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    if keep > 0:
        for old in _steps(store)[:-keep]:
            for p in list(store.list(f"step-{old:08d}/")):
                if not p.endswith("MANIFEST.json"):
                    store.delete(p)
            store.delete(f"step-{old:08d}/MANIFEST.json")
    return f"{root.rstrip('/')}/{name}"


def _steps(store: Any) -> list[int]:
    out = []
    for p in store.list(""):
        m = _STEP_RE.match(p)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def latest_checkpoint(root: str) -> str | None:
    """The newest complete checkpoint under ``root`` (one with a manifest), or None."""
    try:
        steps = _steps(open_store(root))
    except (FileNotFoundError, ObjectNotFound):
        return None
    return f"{root.rstrip('/')}/step-{steps[-1]:08d}" if steps else None


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load ``path`` (a ``step-N`` location, or a root: its newest checkpoint), checksums verified."""
    path = path.rstrip("/")
    if not re.search(r"step-\d{8}$", path):
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no complete checkpoint (step-N/MANIFEST.json) under {path}")
        path = found
    root, _, name = path.rpartition("/")
    store = open_store(root or ".")
    try:
        manifest = json.loads(store.read(f"{name}/MANIFEST.json"))
    except (FileNotFoundError, ObjectNotFound):
        raise FileNotFoundError(f"{path} has no MANIFEST.json: an incomplete checkpoint (the run was stopped "
                                f"while saving); resume from the checkpoint root to take the newest complete "
                                f"one") from None
    if manifest.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path} is not an mmlake training checkpoint")
    data = {}
    for fname, meta in manifest["files"].items():
        blob = store.read(f"{name}/{fname}")
        if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
            raise ValueError(f"checkpoint {path}: {fname} does not match its sha256 in MANIFEST.json (corrupt)")
        data[fname] = blob

    def load(fname: str) -> Any:
        return torch.load(io.BytesIO(data[fname]), map_location=map_location, weights_only=False)

    state = json.loads(data["state.json"])
    return Checkpoint(step=int(manifest["step"]), model=load("model.pt"), optim=load("optim.pt"),
                      extra=load("extra.pt"), state=state, where=path)


def check_compatible(saved: dict[str, Any], current: dict[str, Any], where: str) -> None:
    """Refuse a resume whose determinism fields differ; the message names each one."""
    keys = sorted(set(saved) | set(current))
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, config {current.get(k)!r}" for k in keys
             if saved.get(k) != current.get(k)]
    if diffs:
        raise ValueError(f"checkpoint {where} was made with a config that differs in fields that change the "
                         f"run (resuming would not continue it exactly): " + "; ".join(diffs)
                         + ". Start a new run (another train.out), or restore those fields.")
