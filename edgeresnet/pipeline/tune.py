"""`tune`: quantize the model as `compile` would, then let the target's backend tune its kernels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeresnet import DEFAULT_MODEL
from edgeresnet.errors import InputError
from edgeresnet.targets import all_targets, backend_of, get_target
from edgeresnet.targets.capabilities import Tunable, TuneRequest, TuneSummary

from .frontend import load_and_quantize


@dataclass(frozen=True)
class TuneOptions:
    target: str
    records: str
    model: str = DEFAULT_MODEL
    weights: str | None = None
    calib: str | None = None  # quantization constants do not change the kernels: a small sample suffices
    calib_samples: int = 64
    trials: int = 64  # candidates measured per kernel
    rpc: str | None = None  # the device farm to measure on, in the backend's address form; None: this machine
    all_kernels: bool = False  # also the small elementwise/pooling kernels, not just the convolutions
    max_kernels: int | None = None  # only the N kernels with the most work (FLOPs x calls)
    batch: int = 1
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise InputError(f"--trials must be at least 1, not {self.trials}")
        if self.calib_samples < 1:
            raise InputError(f"--calib-samples must be at least 1, not {self.calib_samples}")
        if self.batch < 1:
            raise InputError(f"--batch must be at least 1, not {self.batch}")
        if self.max_kernels is not None and self.max_kernels < 1:
            raise InputError(f"--kernels must be at least 1, not {self.max_kernels}")


def tune(options: TuneOptions) -> TuneSummary:
    target = get_target(options.target)
    backend = backend_of(target)
    if not isinstance(backend, Tunable):
        tunable = [f"{t.name} ({t.backend})" for t in all_targets() if isinstance(backend_of(t), Tunable)]
        raise InputError(f"{target.name} builds with {backend.name}, which has no tuning; tunable targets: {', '.join(tunable)}")
    backend.check_tuning(target, options.rpc, Path(options.records))
    quantized = load_and_quantize(options.model, options.weights, options.calib, options.calib_samples, options.seed,
                                  backend.quant_scheme, batch=options.batch, progress=False)
    return backend.tune(TuneRequest(
        target=target, int8_model=quantized.int8, input_shape=[options.batch, *quantized.model.preprocessing.input_shape],
        model_name=quantized.model.name, records=Path(options.records), trials=options.trials, device=options.rpc,
        all_kernels=options.all_kernels, max_kernels=options.max_kernels, seed=options.seed, progress=options.progress))
