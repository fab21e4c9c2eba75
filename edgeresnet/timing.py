"""Latency of a callable: each run's milliseconds after warm-up, and their percentiles."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def run_times(call: Callable[[], object], warmup: int = 5, runs: int = 50) -> list[float]:
    """Milliseconds of each of `runs` calls, after warm-up calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def summarize_times(times: list[float]) -> dict[str, Any]:
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p90_ms": round(float(np.percentile(times, 90)), 3),
            "runs": len(times)}


def latency(call: Callable[[], object], warmup: int = 5, runs: int = 50) -> dict[str, Any]:
    """p50/p90 milliseconds of `call`, after warm-up runs."""
    return summarize_times(run_times(call, warmup, runs))
