"""The shipped library on boards registered with a TVM RPC tracker (the device farm `edgeresnet tune --rpc` uses).

Each board under the key gets the artifact's own `model.so` uploaded, loads it in
its RPC server's runtime, and runs its shard of the inputs there; with several
free boards under one key the inputs are split into contiguous shards, one per
board, run at the same time. Latency is timed on the board by TVM's
`time_evaluator` (no network in it).
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeresnet.errors import InputError

from ..capabilities import RemoteRun

SESSION_TIMEOUT_S = 1800
ADDRESS_FORM = "KEY@TRACKER_HOST:PORT"


@dataclass(frozen=True)
class RpcDevice:
    """A board registered with a TVM RPC tracker under `key` (the device farm of docs/tuning.md)."""

    key: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "RpcDevice":
        key, at, address = text.partition("@")
        host, colon, port = address.rpartition(":")
        if not (key and at and host and colon and port.isdigit() and 0 < int(port) < 65536):
            raise InputError(f"--rpc takes {ADDRESS_FORM} (e.g. rpi5@192.168.1.10:9190), not {text!r}")
        return cls(key, host, int(port))

    def __str__(self) -> str:
        return f"{self.key}@{self.host}:{self.port}"


def free_boards(device: RpcDevice) -> tuple[int, list[str]]:
    """How many boards are free under the key, and the servers the tracker lists for it; fails fast without one."""
    from tvm import rpc

    try:
        socket.create_connection((device.host, device.port), timeout=10).close()
        summary = rpc.connect_tracker(device.host, device.port).summary()
    except Exception as exc:  # TVM's client raises bare RuntimeErrors and socket errors
        raise InputError(f"no TVM RPC tracker answers at {device.host}:{device.port} ({exc})") from None
    queues = {str(k).split(":")[0]: v for k, v in summary.get("queue_info", {}).items()}
    if device.key not in queues:
        raise InputError(f"the tracker at {device.host}:{device.port} has no device under key {device.key!r} "
                         f"(keys: {', '.join(sorted(queues)) or 'none'})")
    servers = sorted(f"{info.get('addr', ['?'])[0]}" for info in summary.get("server_info", [])
                     if str(info.get("key", "")).split(":")[-1] == device.key or device.key in str(info.get("key", "")))
    return max(1, int(queues[device.key].get("free", 1))), servers


def _run_shard(device: RpcDevice, library: Path, images: np.ndarray, batch: int, timed: bool) -> tuple[np.ndarray, list[float]]:
    import tvm
    from tvm import relax, rpc

    remote = rpc.connect_tracker(device.host, device.port).request(device.key, session_timeout=SESSION_TIMEOUT_S)
    remote.upload(str(library))
    board = remote.cpu()
    vm = relax.VirtualMachine(remote.load_module(library.name), board)
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        rows = len(chunk)
        if rows < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - rows, axis=0)])
        outputs.append(vm["main"](tvm.runtime.tensor(np.ascontiguousarray(chunk, dtype=np.float32), board)).numpy()[:rows])
    latencies = []
    if timed and len(images):
        sample = tvm.runtime.tensor(np.ascontiguousarray(images[:batch] if len(images) >= batch else
                                                         np.repeat(images[:1], batch, axis=0), dtype=np.float32), board)
        timer = vm.time_evaluator("main", board, number=1, repeat=20)
        latencies = [seconds * 1000 for seconds in timer(sample).results]
    return np.concatenate(outputs).astype(np.float32), latencies


def run_on_boards(device: RpcDevice, library: Path, images: np.ndarray, batch: int) -> RemoteRun:
    """All logits, in input order, from the boards under the key (sharded when several are free)."""
    boards, servers = free_boards(device)
    batches = -(-len(images) // batch)
    boards = max(1, min(boards, batches))
    # Contiguous shards of whole batches, one per board; the first board also times the library.
    edges = [round(i * batches / boards) * batch for i in range(boards + 1)]
    shards = [images[edges[i]:min(edges[i + 1], len(images))] for i in range(boards)]
    with ThreadPoolExecutor(max_workers=boards) as pool:
        results = list(pool.map(lambda item: _run_shard(device, library, item[1], batch, item[0] == 0), enumerate(shards)))
    return RemoteRun(np.concatenate([r[0] for r in results]), results[0][1], boards, servers, str(device),
                     {"tvm": "the RPC server's own runtime", "library": library.name})
