"""In-repo GPU training: a small Kimi-VL-shaped VLM trained from the loader's packed batches.

``mmlake train training/configs/cpu-tiny.yaml`` (or ``h200.yaml`` on a GPU, ``torchrun`` for
several ranks). Pieces: ``training.config`` (frozen config dataclasses from YAML),
``training.model`` (native-resolution ViT with 2D RoPE -> 2x2 pixel shuffle -> MLP projector ->
MoE decoder), ``training.moe`` (shared + routed experts, auxiliary-loss-free balancing),
``training.attention`` (varlen attention: flash, FlexAttention, SDPA per segment),
``training.optim`` (AdamW / Muon, warm-up + cosine / WSD), ``training.checkpoint`` (model,
optimizer, RNG and every rank's loader state; manifest last), ``training.loop`` (the run),
``training.evaluate`` (does the model use its images? true vs shuffled images).
"""

from training.config import TrainConfig, load_config
from training.loop import TrainResult, train

__all__ = ["TrainConfig", "load_config", "train", "TrainResult"]
