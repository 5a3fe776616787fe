"""Training fixtures: a small lake of grounded captions and a tiny config written as YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from datalake.version import Lake, write_version
from synth.shapes import shape_samples

TINY: dict[str, Any] = {
    "model": {"vocab_size": 50304, "vit_dim": 32, "vit_layers": 1, "vit_heads": 2, "pos_grid": 8, "dim": 48,
              "layers": 2, "heads": 4, "dense_layers": 1, "ffn_dim": 96, "experts": 4, "top_k": 2,
              "shared_experts": 1, "expert_dim": 32, "attention": "sdpa"},
    "data": {"seq_len": 256, "batch_size": 2, "num_workers": 0, "augment": None, "max_pixels": 112 * 112,
             "pack_buffer": 8},
    "optim": {"name": "adamw", "lr": 0.003, "warmup_steps": 2},
    "train": {"steps": 6, "seed": 0, "device": "cpu", "ckpt_every": 3, "plot": False, "keep": 0},
}


@pytest.fixture(scope="package")
def train_lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``shapes`` (48 grounded captions, 3 shards) and ``heldout`` (16, another seed) as manifest URIs."""
    lake = Lake.open(str(tmp_path_factory.mktemp("train-lake")))
    shapes = write_version(lake, "shapes", shape_samples(48, seed=5, size=(112, 84)), shard_samples=16)
    held = write_version(lake, "heldout", shape_samples(16, seed=77, size=(112, 84)), shard_samples=16)
    return {"shapes": shapes.uri, "heldout": held.uri}


def write_config(path: Path, sources: list[dict[str, Any]], out: Path, **sections: dict[str, Any]) -> Path:
    raw = {k: dict(v) for k, v in TINY.items()}
    raw["data"]["sources"] = sources
    raw["train"]["out"] = str(out)
    for sec, vals in sections.items():
        raw.setdefault(sec, {}).update(vals)
    path.write_text(yaml.safe_dump(raw))
    return path
