"""Training configuration: frozen dataclasses per component, read from YAML once and validated.

A config file has four sections -- ``model``, ``data`` (the loader), ``optim`` and ``train`` --
plus an optional ``eval``. Unknown keys are refused with the list of known ones, so a typo
never passes silently. ``TrainConfig.determinism()`` is the part a checkpoint must agree with
for a resumed run to continue exactly (everything but worker counts, logging and checkpoint
cadence); ``--resume`` refuses a checkpoint whose determinism fields differ and names them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ModelConfig", "DataConfig", "OptimConfig", "RunConfig", "EvalConfig", "TrainConfig", "load_config"]


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class ModelConfig:
    """The Kimi-VL shape: native-resolution ViT -> 2x2 pixel shuffle -> MLP projector -> MoE decoder."""

    vocab_size: int = 50304
    # vision tower
    vit_dim: int = 64
    vit_layers: int = 2
    vit_heads: int = 2
    vit_mlp_ratio: float = 4.0
    patch: int = 14
    #: the learnable absolute position table is (pos_grid x pos_grid), interpolated to each image
    pos_grid: int = 16
    merge: int = 2
    # decoder
    dim: int = 64
    layers: int = 2
    heads: int = 4
    #: dense FFN in the first layers, MoE after (DeepSeek-V3 keeps the first layers dense)
    dense_layers: int = 0
    ffn_dim: int = 128
    experts: int = 4
    top_k: int = 2
    shared_experts: int = 1
    expert_dim: int = 64
    #: DeepSeek-V3 auxiliary-loss-free balancing: bias step per update (0 disables)
    bias_update: float = 1e-3
    #: optional auxiliary balance loss coefficient (Switch-style f_i * P_i)
    aux_loss: float = 0.0
    rope_theta: float = 10000.0
    #: "auto" (flash-attn varlen if installed on CUDA, else FlexAttention on CUDA, else SDPA per
    #: segment), or one of "sdpa", "flex", "flash"
    attention: str = "auto"
    tie_embeddings: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"model.dim ({self.dim}) must split into {self.heads} heads of an even size")
        if self.vit_dim % self.vit_heads or (self.vit_dim // self.vit_heads) % 4:
            raise ValueError(f"model.vit_dim ({self.vit_dim}) must split into {self.vit_heads} heads of a size "
                             f"divisible by 4 (2D rotary: half for rows, half for columns)")
        if self.experts and not 1 <= self.top_k <= self.experts:
            raise ValueError(f"model.top_k must be in [1, experts={self.experts}], got {self.top_k}")
        if self.attention not in ("auto", "sdpa", "flex", "flash"):
            raise ValueError(f"model.attention must be auto, sdpa, flex or flash, got {self.attention!r}")
        if self.merge != 2:
            raise ValueError("model.merge must be 2 (the loader emits one <|media_pad|> per 2x2 patches)")


@dataclass(frozen=True)
class DataConfig:
    """The loader (see ``loader.LoaderConfig``); ``sources`` are ``{dataset, weight, max_synthetic}``."""

    sources: list[dict[str, Any]] = field(default_factory=list)
    #: a lake root (path or URI; $VARS expanded): sources named NAME or NAME@latest are resolved in
    #: it without a registry; otherwise sources are registry refs or manifest URIs
    lake: str | None = None
    seq_len: int = 1024
    batch_size: int = 4
    num_workers: int = 2
    tokenizer: str | None = None
    augment: str | dict[str, Any] | None = "default"
    max_pixels: int | None = 224 * 224
    coords: str = "norm1000"
    pack_buffer: int = 64
    prefetch: int = 2
    registry: str | None = None
    schedule: list[Any] | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("data.sources: give at least one {dataset: REF-or-manifest-URI, weight: W}")
        for i, s in enumerate(self.sources):
            if not isinstance(s, dict) or "dataset" not in s:
                raise ValueError(f"data.sources[{i}]: expected {{dataset: ..., weight: ...}}, got {s!r}")


@dataclass(frozen=True)
class OptimConfig:
    #: "adamw", or "muon" (Muon for 2-D hidden weights, AdamW for embeddings, head, norms, router)
    name: str = "adamw"
    lr: float = 3e-3
    #: AdamW's learning rate for the non-Muon groups when name is muon (None: lr)
    adamw_lr: float | None = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    momentum: float = 0.95
    warmup_steps: int = 10
    #: "cosine" (to min_lr_ratio at the last step) or "wsd" (warmup, stable, decay over decay_frac)
    schedule: str = "cosine"
    decay_frac: float = 0.2
    min_lr_ratio: float = 0.1
    clip: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in ("adamw", "muon"):
            raise ValueError(f"optim.name must be adamw or muon, got {self.name!r}")
        if self.schedule not in ("cosine", "wsd"):
            raise ValueError(f"optim.schedule must be cosine or wsd, got {self.schedule!r}")
        object.__setattr__(self, "betas", tuple(self.betas))


@dataclass(frozen=True)
class RunConfig:
    out: str = "runs/train"
    steps: int = 20
    seed: int = 0
    #: "auto" (cuda if available), "cpu" or "cuda"
    device: str = "auto"
    #: "bf16" autocast on CUDA (ignored on CPU), or "fp32"
    precision: str = "bf16"
    log_every: int = 1
    ckpt_every: int = 0
    #: keep the newest N checkpoints (0: all)
    keep: int = 2
    #: a directory or a store URI (file://, s3://) for checkpoints; default: OUT/checkpoints
    ckpt_dir: str | None = None
    metrics_port: int | None = None
    #: record the run in the registry (a ``train`` run with the input versions as lineage)
    register: bool = True
    plot: bool = True
    #: torch.compile the decoder and vision blocks on CUDA
    compile: bool = False
    #: stop after this many seconds of training (0: run all steps); the run still checkpoints
    time_limit_s: float = 0.0
    #: write the final checkpoint (benchmarks turn it off)
    save: bool = True

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"train.precision must be bf16 or fp32, got {self.precision!r}")
        if self.steps < 1:
            raise ValueError("train.steps must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """Held-out check that the vision path is wired: caption loss with true vs shuffled images."""

    dataset: str | None = None
    batches: int = 4
    every: int = 0


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig
    train: RunConfig
    eval: EvalConfig
    path: str | None = None

    #: fields a resumed run may change without breaking determinism
    FREE = ("data.num_workers", "data.prefetch", "data.registry", "data.lake", "train.out", "train.log_every",
            "train.ckpt_every", "train.keep", "train.ckpt_dir", "train.metrics_port", "train.register",
            "train.plot", "train.time_limit_s", "train.compile", "train.save", "eval.batches", "eval.every", "eval.dataset")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d["optim"]["betas"] = list(d["optim"]["betas"])
        return d

    def determinism(self) -> dict[str, Any]:
        """Flat ``section.key -> value`` of everything a checkpoint must match."""
        flat = {f"{sec}.{k}": v for sec, vals in self.to_json().items() for k, v in vals.items()}
        return {k: v for k, v in flat.items() if k not in self.FREE}

    @staticmethod
    def from_dict(raw: dict[str, Any], path: str | None = None) -> TrainConfig:
        if not isinstance(raw, dict):
            raise ValueError(f"{path or 'config'}: expected a mapping with model, data, optim, train")
        unknown = sorted(set(raw) - {"model", "data", "optim", "train", "eval"})
        if unknown:
            raise ValueError(f"{path or 'config'}: unknown section(s) {unknown}; known: model, data, optim, train, eval")
        return TrainConfig(model=_build(ModelConfig, raw.get("model"), "model"),
                           data=_build(DataConfig, raw.get("data"), "data"),
                           optim=_build(OptimConfig, raw.get("optim"), "optim"),
                           train=_build(RunConfig, raw.get("train"), "train"),
                           eval=_build(EvalConfig, raw.get("eval"), "eval"), path=path)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config; ``overrides`` are ``{"section.key": value}`` (the CLI's ``--set``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"training config {path}: no such file (see training/configs/)")
    raw = yaml.safe_load(p.read_text()) or {}
    for dotted, value in (overrides or {}).items():
        sec, _, key = dotted.partition(".")
        if not key:
            raise ValueError(f"override {dotted!r}: use section.key=value, e.g. train.steps=100")
        raw.setdefault(sec, {})
        if raw[sec] is None:
            raw[sec] = {}
        raw[sec][key] = value
    return TrainConfig.from_dict(raw, str(p))
