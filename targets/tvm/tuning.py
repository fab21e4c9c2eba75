"""MetaSchedule tuning for the TVM targets: `edgeresnet tune`, and the records `compile --records` reuses.

The rules of `schedules` give every kernel a schedule with no tuning. Tuning
tries to beat them, kernel by kernel (the convolutions, unless all kernels are
asked for): each kernel's rule schedule is measured first and committed to the
database as a record of its own, then MetaSchedule searches `trials` candidates
with the same builder and runner. `compile --records` applies each kernel's
fastest record, MetaSchedule's where it won and the rules' own trace where they
did, so tuning never makes a kernel slower than the rules on the device it was
measured on.

Kernels are measured where they will run. The host profile measures locally. A
board is measured through TVM's RPC: a tracker anywhere on the network, an RPC
server on each board registered under a key, and `--rpc KEY@TRACKER:PORT` here
(docs/tuning.md). Candidates are cross-compiled here and uploaded as shared
libraries, so the boards need only the TVM runtime.

The records folder holds MetaSchedule's JSON database and `tuning.json`: what was
tuned, for which profile and LLVM target, with which TVM, and what each kernel
measured. `compile` refuses records made for another profile (a dot-product
schedule would not even run on a board without sdot).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from edgeresnet.atomic import atomic_directory
from edgeresnet.errors import InputError, MissingDependency

from ..base import Target
from ..capabilities import TuneRequest
from .module import integer_module
from .records import DATABASE_FILES, SCHEMA, SUMMARY_FILE, check_records_for
from .pipeline import fused_module
from .remote import RpcDevice
from .rules import ConvRules, ScheduleStats
from .schedules import rule_schedule


@dataclass
class KernelTuning:
    kernel: str
    calls: int
    rules_ms: float | None  # the rule schedule, measured
    best_ms: float | None = None  # the fastest record after the search
    source: str = "rules"  # "rules" or "metaschedule"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuneResult:
    records: str
    target: str
    model: str
    trials_per_kernel: int
    kernels: list[KernelTuning]
    seconds: float
    seed: int
    measured_on: str

    @property
    def metaschedule_wins(self) -> int:
        return sum(1 for k in self.kernels if k.source == "metaschedule")

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "model": self.model, "trials_per_kernel": self.trials_per_kernel,
                "kernels": [k.to_dict() for k in self.kernels], "seconds": self.seconds, "seed": self.seed,
                "target": self.target, "measured_on": self.measured_on, "tuned_kernels": len(self.kernels),
                "metaschedule_wins": self.metaschedule_wins}

    def table(self) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        return ([k.to_dict() for k in self.kernels],
                [("kernel", "kernel"), ("calls", "calls"), ("rules_ms", "rules ms"), ("best_ms", "best ms"), ("source", "best from")])

    def summary(self) -> str:
        return (f"{len(self.kernels)} kernels, {self.trials_per_kernel} trials each, measured on {self.measured_on}: "
                f"MetaSchedule beat the rules on {self.metaschedule_wins}; records in {self.records} "
                f"(use: edgeresnet compile --target {self.target} --records {self.records})")


def _meta_schedule():
    missing = [name for name in ("psutil", "xgboost", "tornado", "cloudpickle") if not _importable(name)]
    if missing:
        raise MissingDependency(f"tuning needs {', '.join(missing)}: pip install 'edgeresnet[tune]'")
    from tvm.s_tir import meta_schedule as ms

    return ms


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def build_kernel(mod, target, _params):
    """MetaSchedule's build step without its default's import of every TVM tensor intrinsic
    (~35 s per fresh worker here, past the builder's timeout)."""
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm.compile(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def export_kernel(module, cross_compiler: str | None) -> str:
    """A shared library the device's runtime loads as it is (no compiler needed on the board)."""
    path = os.path.join(tempfile.mkdtemp(prefix="edgeresnet-tune-"), "kernel.so")
    module.export_library(path, **({"cc": cross_compiler} if cross_compiler else {}))
    return path


def _runner(ms, rpc: RpcDevice | None):
    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=40, enable_cpu_cache_flush=False)
    if rpc is None:
        return ms.runner.LocalRunner(evaluator_config=evaluator, timeout_sec=60)
    config = ms.runner.RPCConfig(tracker_host=rpc.host, tracker_port=rpc.port, tracker_key=rpc.key, session_timeout_sec=120)
    return ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator, max_workers=1)


def _check_tracker(rpc: RpcDevice) -> None:
    """Fail in a second with a clear message, rather than after MetaSchedule's per-candidate timeouts."""
    import socket

    from tvm import rpc as tvm_rpc

    try:  # TVM's own client retries for a minute, warning every 5 s
        socket.create_connection((rpc.host, rpc.port), timeout=10).close()
        summary = tvm_rpc.connect_tracker(rpc.host, rpc.port).summary()
    except Exception as exc:  # the tracker client raises bare RuntimeErrors and socket errors
        raise InputError(f"no TVM RPC tracker answers at {rpc.host}:{rpc.port} ({exc})") from None
    keys = {str(k).split(":")[0] for k in summary.get("queue_info", {})}
    if rpc.key not in keys:
        raise InputError(f"the tracker at {rpc.host}:{rpc.port} has no device under key {rpc.key!r} "
                         f"(keys: {', '.join(sorted(keys)) or 'none'})")


def _measure(ms, builder, runner, mod, target) -> float | None:
    """Mean seconds of one scheduled kernel through the tuning builder and runner (None if it fails)."""
    built = builder.build([ms.builder.BuilderInput(mod, target)])[0]
    if built.error_msg:
        return None
    args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    result = runner.run([ms.runner.RunnerInput(built.artifact_path, "cpu", args)])[0].result()
    shutil.rmtree(os.path.dirname(built.artifact_path), ignore_errors=True)
    if result.error_msg or not result.run_secs:
        return None
    return _mean(result.run_secs)


def check_tuning(target: Target, llvm: dict, rpc: RpcDevice | None, records: Path) -> None:
    """What can fail in a second fails before the model is even quantized."""
    if target.arch != os.uname().machine and rpc is None:
        raise InputError(f"{target.name} kernels must be measured on a {target.arch} board: pass --rpc KEY@TRACKER:PORT "
                         "(an RPC server on the board registered with a tracker; see docs/tuning.md)")
    _meta_schedule()
    if rpc is not None:
        _check_tracker(rpc)
    if Path(records).exists():
        check_records_for(records, target.name, llvm)


def tune_kernels(request: TuneRequest, llvm: dict) -> TuneResult:
    """Tune the kernels of the integer module that `compile --target` builds; write/extend the records folder."""
    import tvm

    target_profile = request.target
    rpc = RpcDevice.parse(request.device) if request.device else None
    check_tuning(target_profile, llvm, rpc, request.records)
    ms = _meta_schedule()
    # MetaSchedule prints its tables on stdout at INFO; ours is the summary (and --json's stdout).
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.ERROR)
    started = time.monotonic()
    # MetaSchedule sizes its parallel loops by the target's core count: the board's threads.
    target = tvm.target.Target({**llvm, "num-cores": int(target_profile.details.threads)})
    fused = fused_module(integer_module(request.int8_model, request.input_shape, target)[0], target)
    tasks = [t for t in ms.relax_integration.extract_tasks(fused, target)
             if request.all_kernels or "conv2d" in t.task_name]
    if not tasks:
        raise InputError(f"model {request.model_name} has no kernels to tune")
    if request.max_kernels is not None:
        from tvm.s_tir.analysis import estimate_tir_flops

        tasks = sorted(tasks, key=lambda t: -estimate_tir_flops(t.dispatched[0]) * t.weight)[: request.max_kernels]

    builder = ms.builder.LocalBuilder(f_build=build_kernel, f_export=partial(export_kernel, cross_compiler=target_profile.details.cross_compiler),
                                      max_workers=1, timeout_sec=120)
    runner = _runner(ms, rpc)
    rules = ConvRules.for_target(target)
    previous = Path(request.records)
    with atomic_directory(request.records, force=True) as staging:
        for name in (*DATABASE_FILES, SUMMARY_FILE):
            if (previous / name).is_file():
                shutil.copy2(previous / name, staging / name)
        earlier = json.loads((staging / SUMMARY_FILE).read_text()).get("runs", []) if (staging / SUMMARY_FILE).is_file() else []
        database = ms.database.JSONDatabase(work_dir=str(staging))
        kernels: list[KernelTuning] = []
        rule_seconds_by_kernel = []
        with target:
            for task in tasks:
                workload_mod = task.dispatched[0]
                schedule = rule_schedule(workload_mod["main"], ScheduleStats(), rules)
                rule_seconds = None
                if schedule is not None:
                    rule_seconds = _measure(ms, builder, runner, schedule.mod, target)
                    if rule_seconds is not None:
                        database.commit_tuning_record(ms.database.TuningRecord(
                            schedule.trace, database.commit_workload(workload_mod), [rule_seconds], target,
                            ms.arg_info.ArgInfo.from_prim_func(workload_mod["main"])))
                kernels.append(KernelTuning(task.task_name, int(task.weight), _ms(rule_seconds)))
                _log(request.progress, f"rules: {task.task_name} {_ms(rule_seconds)} ms")
                rule_seconds_by_kernel.append(rule_seconds)
            _log(request.progress, f"MetaSchedule: {request.trials} trials for each of {len(tasks)} kernels "
                                   f"on {rpc or 'this machine'}")
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                tasks, str(staging), strategy=_search(ms, request.trials), num_threads=os.cpu_count() or 1, seed=request.seed)
            ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(staging),
                          max_trials_global=request.trials * len(tasks), max_trials_per_task=request.trials,
                          num_trials_per_iter=min(request.trials, 16), builder=builder, runner=runner, database=database)
            for task, kernel, rule_seconds in zip(tasks, kernels, rule_seconds_by_kernel):
                best = database.query_tuning_record(task.dispatched[0], target, "main")
                best_seconds = _mean(best.run_secs) if best is not None else None
                kernel.best_ms = _ms(best_seconds)
                kernel.source = "rules" if best_seconds is None or best_seconds == rule_seconds else "metaschedule"
        _remove_logs(staging)
        result = TuneResult(records=str(request.records), target=target_profile.name, model=request.model_name,
                            trials_per_kernel=request.trials, kernels=kernels, seconds=round(time.monotonic() - started, 1),
                            seed=request.seed, measured_on=str(rpc) if rpc else f"local {os.uname().machine}")
        summary = {
            "schema": SCHEMA, "target": target_profile.name, "llvm_target": llvm, "tvm_version": tvm.__version__,
            "input_shape": request.input_shape, "measured_on": result.measured_on,
            "runs": earlier + [{"model": result.model, "trials_per_kernel": result.trials_per_kernel,
                                "kernels": [k.to_dict() for k in kernels], "seconds": result.seconds, "seed": result.seed}],
            "reproduce": f"edgeresnet tune --target {target_profile.name} --model {request.model_name} --trials {request.trials} "
                         f"--seed {request.seed}" + (" --all-kernels" if request.all_kernels else "")
                         + (f" --kernels {request.max_kernels}" if request.max_kernels else "")
                         + (" --rpc KEY@TRACKER:PORT" if rpc else ""),
        }
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return result


def _search(ms, trials: int):
    """MetaSchedule's evolutionary search, its population scaled to the budget: the default
    (512, 4 generations) costs minutes per kernel on 2 cores before the first measurement."""
    population = min(512, max(64, 8 * trials))
    return ms.search_strategy.EvolutionarySearch(population_size=population, init_min_unmeasured=min(50, population // 2),
                                                 genetic_num_iters=4 if trials >= 64 else 2)


def _mean(run_secs) -> float:
    """A record's measured seconds, as MetaSchedule's database ranks them (the mean)."""
    return sum(float(s) for s in run_secs) / len(run_secs)


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 4)


def _remove_logs(folder: Path) -> None:
    """MetaSchedule's per-task logs are large and not records."""
    shutil.rmtree(folder / "logs", ignore_errors=True)
