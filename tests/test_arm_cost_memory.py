"""benchmarks/arm_cost.py's memory and thread model: the board table, the wall-cycle rule, the plugin's caches.

The rule tests feed hand-made counts through `cost_of` (no emulation); the plugin test runs a small
guest program under qemu with the plugin and checks that a sequential stream is prefetched while
random reads of a buffer larger than every cache are served by DRAM.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import arm_cost  # noqa: E402
from arm_cost import BOARDS, Count, cost_of  # noqa: E402


def test_every_board_figure_names_its_source_and_latencies_grow_outwards():
    for board in BOARDS.values():
        assert board.caches[0].shared is False and board.line == 64
        assert all(cache.source for cache in board.caches) and board.dram_source
        latencies = [cache.latency for cache in board.caches] + [board.dram_ns * board.clock_ghz]
        assert latencies == sorted(latencies) and len(set(latencies)) == len(latencies), board.name
        sizes = [cache.size_kb for cache in board.caches]
        assert sizes == sorted(sizes), board.name
        stalls = board.stall_cycles()
        assert stalls[0] > 0 and stalls[2] > stalls[0]
    # The Pi 4 shares its one L2; the Pi 5 has a private L2 and a shared L3.
    assert [c.shared for c in BOARDS["rpi4"].caches] == [False, True]
    assert [c.shared for c in BOARDS["rpi5"].caches] == [False, False, True]
    assert BOARDS["rpi5"].plugin_arguments() == ["cores=4", "line=64", "l1=65536:4", "l2=524288:8:private",
                                                 "l3=2097152:16:shared"]


class FakeSymbols:
    def name(self, path: str, offset: int) -> str:
        return {0x100: "model.so:conv", 0x200: "libtvm_runtime.so:tvm::runtime::SpscTaskQueue::Pop",
                0x300: "libonnxruntime.so:fn@0x300 (stripped)", 0x400: "model.so:serial"}[offset]


# Instruction words as in memory (little-endian hex) and their assembly.
ADD, YIELD, LDR = "00040091", "3f2003d5", "200040f9"
ASSEMBLY = {ADD: "add x0, x0, #1", YIELD: "yield", LDR: "ldr x0, [x1]"}
CONV, POOL_WAIT, SPIN, SERIAL = (("/m.so", 0x100, ADD * 2), ("/rt.so", 0x200, LDR), ("/ort.so", 0x300, YIELD + LDR),
                                 ("/m.so", 0x400, LDR))
CYCLES = {ADD * 2: 1.0, LDR: 1.0, YIELD + LDR: 2.0}


def cost(counts, board="rpi5"):
    return cost_of("m", BOARDS[board], "tvm-int8", 4, counts, FakeSymbols(), CYCLES, ASSEMBLY)


def test_wall_cycles_are_serial_work_plus_each_regions_slowest_thread_and_waiting_is_left_out():
    none = (0, 0, 0)
    counts = [
        Count(0, 0, SERIAL, 100, none, none),  # before the first launch: serial
        Count(0, 1, CONV, 50, none, none), Count(1, 1, CONV, 80, none, none), Count(2, 1, CONV, 70, none, none),
        Count(0, 2, CONV, 90, none, none), Count(1, 2, CONV, 40, none, none),
        Count(1, 1, POOL_WAIT, 10_000, none, none),  # a worker waiting in TVM's queue: by symbol
        Count(2, 2, SPIN, 5_000, none, none),  # a function that executes a yield hint: spinning
    ]
    result = cost(counts)
    assert result.compute_cycles == 100 + 80 + 90  # serial, then the slowest thread of each region
    assert result.memory_cycles == 0 and result.cycles == result.compute_cycles
    assert result.work_cycles_all_threads == 100 + 50 + 80 + 70 + 90 + 40
    assert result.slowest_thread_cycles == 100 + 50 + 90  # the launching thread: serial work and its shares
    assert result.wait_instructions_excluded == 10_000 * 1 + 5_000 * 2
    assert result.instructions == 100 + (50 + 80 + 70 + 90 + 40) * 2
    assert result.parallel_regions == 2
    assert all("SpscTaskQueue" not in k["kernel"] and "fn@0x300" not in k["kernel"] for k in result.top_kernels)


def test_memory_stalls_follow_the_level_that_served_each_load_and_prefetched_loads_are_free():
    board = BOARDS["rpi5"]
    counts = [Count(0, 0, SERIAL, 10, (4, 2, 1), (100, 100, 100))]
    result = cost(counts)
    l2, l3, dram = board.stall_cycles()
    expected = (4 * l2 + 2 * l3 + 1 * dram) * (1 - arm_cost.HIDDEN_FRACTION)
    assert result.memory_cycles == round(expected)
    assert result.cycles == result.compute_cycles + result.memory_cycles == round(10 + expected)
    assert result.load_misses == {"l1": 307, "l2": 203, "l3": 101}
    assert result.prefetched_share == pytest.approx(300 / 307, abs=1e-4)
    # A board without L3: its L2 misses are the loads DRAM served, and no "l3" key.
    assert cost([Count(0, 0, SERIAL, 1, (3, 0, 2), (0, 0, 0))], "rpi4").load_misses == {"l1": 5, "l2": 2}


GUEST = """
import os, random, sys
def mark(value):
    try:
        os.lseek(-1, value, 0)
    except OSError:
        pass
data = bytearray(8 << 20)
random.seed(0)
spots = [random.randrange(len(data)) for _ in range(20000)]
mark(0x41524D434F535433)
mark(0x41524D434F535431)
if sys.argv[1] == "sequential":
    copy = bytes(data)
else:
    total = 0
    for i in spots:
        total += data[i]
mark(0x41524D434F535432)
"""


def plugin_counts(tmp_path: Path, pattern: str) -> tuple[int, int, int]:
    """(loads DRAM served that no prefetched stream covered, prefetched loads, block executions) of the marked part."""
    from edgeresnet.targets.tvm.emulation import build_runtime, qemu_binary

    plugin = arm_cost.build_plugin(arm_cost.cache_folder())
    sysroot = build_runtime() / "sysroot"
    script, out = tmp_path / "guest.py", tmp_path / f"{pattern}.txt"
    script.write_text(GUEST)
    arguments = ",".join([str(plugin), f"out={out}", *BOARDS["rpi5"].plugin_arguments()])
    subprocess.run(["env", "-i", "PYTHONHASHSEED=0", qemu_binary(), "-cpu", "cortex-a76", "-L", str(sysroot), "-plugin",
                    arguments, str(sysroot / "usr/bin/python3.11"), str(script), pattern], check=True, timeout=600)
    dram = prefetched = executions = 0
    for line in out.read_text().splitlines():
        fields = line.split()
        if fields[0] == "C":
            numbers = [int(v) for v in fields[4:]]
            executions += numbers[0]
            dram += numbers[3]
            prefetched += sum(numbers[4:7])
    return dram, prefetched, executions


@pytest.mark.slow
def test_the_plugin_prefetches_a_stream_and_misses_on_random_reads(tmp_path):
    dram, prefetched, executions = plugin_counts(tmp_path, "sequential")
    lines = (8 << 20) // 64
    assert executions > 0
    # Copying 8 MB reads 131,072 lines: nearly all arrive through the prefetched stream.
    assert prefetched > 0.9 * lines and dram < 0.05 * lines
    dram, _, _ = plugin_counts(tmp_path, "random")
    # 20,000 reads at random in 8 MB (4x the L3): most come from DRAM, no stream to prefetch.
    assert dram > 0.6 * 20000


def test_the_results_table_shows_every_row_and_marks_lower_bounds(tmp_path):
    rows = [cost([Count(t, 0, SERIAL, 1000 * (t + 1), (5, 0, 1), (0, 0, 0)) for t in range(4)]),
            cost([Count(0, 0, SERIAL, 800, (0, 0, 0), (0, 0, 0))])]
    rows[1].runtime, rows[1].threads, rows[1].ratio_vs_ort_int8 = "ort-int8", 4, 1.0
    path = tmp_path / "arm_cost.json"
    arm_cost.merge_results(path, rows[:1])
    arm_cost.merge_results(path, rows)  # the same key again: replaced, not doubled
    table = arm_cost.markdown_table(json.loads(path.read_text())).splitlines()
    assert len(table) == 2 + 2
    ort = next(line for line in table if "ort-int8" in line)
    assert "(bound)" in ort and "| 1.00 |" in ort  # one region over 4 threads: a lower bound
    tvm = next(line for line in table if "tvm-int8" in line)
    assert "(bound)" in tvm  # FakeSymbols' counts have no region either


def test_a_row_counted_alone_gets_its_ratio_from_the_file_s_onnx_runtime_row(tmp_path):
    ours = cost([Count(0, 0, SERIAL, 1000, (0, 0, 0), (0, 0, 0))])
    ort = cost([Count(0, 0, SERIAL, 2000, (0, 0, 0), (0, 0, 0))])
    ort.runtime, ort.threads = "ort-int8", ours.threads
    path = tmp_path / "arm_cost.json"
    arm_cost.merge_results(path, [ort])
    arm_cost.merge_results(path, [ours])  # a later run of our runtime alone
    rows = {r["runtime"]: r for r in json.loads(path.read_text())}
    assert rows["tvm-int8"]["ratio_vs_ort_int8"] == round(ours.cycles / ort.cycles, 3) < 1
    assert rows["ort-int8"]["ratio_vs_ort_int8"] == 1.0 and rows["tvm-int8"]["ratio_vs_ort_fp32"] is None
