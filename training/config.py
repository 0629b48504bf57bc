"""The full configuration of a training run; stored on the run and written next to the adapter."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Phi-2's attention projections, attention output and MLP; other architectures pass their own names.
PHI2_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]


@dataclass
class TrainConfig:
    base_model: str = "microsoft/phi-2"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(PHI2_TARGET_MODULES))
    epochs: float = 2.0
    max_steps: int | None = None  # set: overrides epochs
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    logging_steps: int = 10
    eval_steps: int | None = None  # default: logging_steps
    save_steps: int = 50
    save_total_limit: int = 2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    output_dir: str | None = None  # default: ./runs/run-<id>

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError("--max-steps must be positive")
        if not self.target_modules:
            raise ValueError("--target-modules needs at least one module name")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
