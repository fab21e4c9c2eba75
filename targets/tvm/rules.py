"""How a kernel names its schedule rule, and what every rule gets and reports: the target's register
tiles (`ConvRules`) and the count of kernels scheduled (`ScheduleStats`, which the report shows).

A kernel family's compute marks its main block with the name of its rule (`rule_attrs`, the way
TOPI's computes carry a "schedule_rule" attribute for MetaSchedule); `schedules` looks the name up
in the families' rule tables. The rule removes the mark first, so the scheduled kernel is the same
TIR as one never marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import tvm

from .dot import DotKind, dot_kind, is_aarch64

# A key of our own, not TOPI's "schedule_rule": MetaSchedule reads that one while tuning, looks for
# a rule of its own registered under the value and skips its other rules for the block.
RULE_ATTR = "edgeresnet.schedule_rule"


def rule_attrs(rule: str) -> dict:
    """te.compute's `attrs` that mark its block as scheduled by `rule` (a key of a family's SCHEDULE_RULES)."""
    return {RULE_ATTR: rule}


@dataclass
class ScheduleStats:
    kernels: int = 0
    scheduled: int = 0
    convolutions: int = 0
    tensorized: int = 0  # blocked integer convolutions whose inner product is a dot-product instruction
    from_records: int = 0  # kernels scheduled by a tuning record (edgeresnet tune) instead of a rule
    # kernel -> iterations of each of its parallel loops (a convolution has two: padding, compute)
    parallel_iterations: dict[str, list[int]] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return round(self.scheduled / self.kernels, 4) if self.kernels else 0.0

    def parallel_split(self, threads: int) -> dict:
        """How the kernels' parallel loops divide among `threads` cores. TVM's runtime gives each
        thread one contiguous chunk of ceil(iterations / threads): a kernel splits evenly when
        every parallel loop's iterations are a multiple of the thread count (else a core idles part of the time)."""
        uneven = {name: loops for name, loops in sorted(self.parallel_iterations.items()) if any(n % threads for n in loops)}
        return {"threads": threads, "parallel_kernels": len(self.parallel_iterations),
                "split_evenly": len(self.parallel_iterations) - len(uneven), "uneven": uneven}

    def to_dict(self) -> dict:
        fields = {k: v for k, v in self.__dict__.items() if k != "parallel_iterations"}
        return {**fields, "share": self.share}


@dataclass(frozen=True)
class ConvRules:
    """Per-target register tiles: output pixels per tile of 8 channels (x86 AVX2: 16 vector
    registers, one per 8 float channels; NEON: 32 registers, two per 8 channels)."""

    dot: DotKind
    float_tile: int
    int8_tile: int
    partial_sums_tile: int = 2  # pixels: 2 x 8 accumulator vectors + 8 weight + 2 input registers of 32
    winograd_tiles: int = 7  # tiles at most per register group: 7 x 2 accumulators + 4 weight + 7 input vectors of 32

    @classmethod
    def for_target(cls, target: tvm.target.Target) -> "ConvRules":
        return cls(dot=dot_kind(target), float_tile=8 if is_aarch64(target) else 14, int8_tile=8)


# A kernel family's rule: (schedule, the marked block, the target's tiles, the stats) -> scheduled or not.
ScheduleRule = Callable[[Any, Any, ConvRules, ScheduleStats], bool]
