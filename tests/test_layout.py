"""The house rules of the layout, checked on the source: the import graph, one backend per folder,
and light commands that stay light.

The import graph is read from the AST of every module, function-local imports
included (a circle hidden inside a function is still a circle). An import of
`a.b.c` is an edge to `a.b.c` only, as import-linter and pydeps count it: Python
also runs the parent packages' `__init__`, but that order is fixed by the package
tree, not by the modules' imports.
"""

from __future__ import annotations

import ast
import re
import json
import subprocess
import sys
from pathlib import Path

from importlib import metadata

import pytest

from edgeresnet.targets import ENTRY_POINT_GROUP
from helpers import REPO, run_cli

# Source folder -> the installed package it becomes (pyproject's package-dir).
PACKAGE_ROOTS = {REPO / "edgeresnet": "edgeresnet", REPO / "targets": "edgeresnet.targets",
                 REPO / "calibration": "edgeresnet.calibration"}
TEMPLATE_FOLDER = "templates"  # device-side scripts shipped in artifacts, not modules of the package
CORE_EXCLUDED = ("edgeresnet.pipeline", "edgeresnet.targets", "edgeresnet.cli", "edgeresnet.commands")


def project_modules() -> dict[str, Path]:
    modules = {}
    for root, package in PACKAGE_ROOTS.items():
        for path in root.rglob("*.py"):
            relative = path.relative_to(root)
            if TEMPLATE_FOLDER in relative.parts or "__pycache__" in relative.parts:
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if _is_package(path) else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from pkg import sub` imports the submodule when there is one
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            visit(node)
    return found


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_the_whole_project():
    graph = import_graph()
    assert {"edgeresnet.quantize", "edgeresnet.pipeline.compile", "edgeresnet.targets.tvm.backend",
            "edgeresnet.targets.tensorrt.parser_rules", "edgeresnet.calibration", "edgeresnet.cli"} <= set(graph)
    assert "edgeresnet.targets.base" in graph["edgeresnet.targets.onnxruntime.backend"]
    assert "edgeresnet.targets.tvm.records" in graph["edgeresnet.targets.tvm.pipeline"]  # relative import resolved
    assert "edgeresnet.targets.tvm.tuning" in graph["edgeresnet.targets.tvm.backend"]  # function-local import counted


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_imports_neither_targets_nor_pipeline():
    graph = import_graph()
    offenders = {module: sorted(t for t in targets if _in(t, ("edgeresnet.targets", "edgeresnet.pipeline")))
                 for module, targets in graph.items() if not _in(module, CORE_EXCLUDED)}
    assert {m: t for m, t in offenders.items() if t} == {}


def builtin_backends() -> tuple[str, ...]:
    """The backend packages edgeresnet declares in its entry point group, as every backend is found."""
    declared = metadata.distribution("edgeresnet").entry_points.select(group=ENTRY_POINT_GROUP)
    return tuple(sorted(entry.value.partition(":")[0] for entry in declared))


def test_every_backend_folder_is_declared_as_a_backend():
    folders = {f"edgeresnet.targets.{path.parent.name}" for path in (REPO / "targets").glob("*/__init__.py")
               if path.parent.name != TEMPLATE_FOLDER}
    assert folders and folders == set(builtin_backends())


def test_only_the_pipeline_imports_targets():
    graph = import_graph()
    offenders = {module: sorted(t for t in targets if _in(t, ("edgeresnet.targets",)))
                 for module, targets in graph.items() if not _in(module, ("edgeresnet.pipeline", "edgeresnet.targets"))}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_backends_sit_below_the_pipeline_and_apart_from_each_other():
    graph = import_graph()
    backends = builtin_backends()
    for module, targets in graph.items():
        if _in(module, ("edgeresnet.targets",)):
            assert not any(_in(t, ("edgeresnet.pipeline", "edgeresnet.cli")) for t in targets), module
        for backend in backends:
            if _in(module, (backend,)):
                others = [t for t in targets if _in(t, backends) and not _in(t, (backend,))]
                assert others == [], (module, others)


LIGHT_PROBE = """
import json, sys
from edgeresnet.cli import main
sys.argv = ["edgeresnet", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tvm", "tvm_ffi"))
print("\\n" + json.dumps({"code": code, "heavy": heavy[:5]}))
"""


def _light_run(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", LIGHT_PROBE, json.dumps(args)], capture_output=True, text=True, timeout=600)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["targets", "--json"], ["models", "--json"], ["compile", "--help"],
                                  ["tune", "--help"], ["validate", "--help"]])
def test_light_commands_import_neither_torch_nor_tvm(args):
    outcome = _light_run(*args)
    assert outcome == {"code": 0, "heavy": []}


def test_capability_help_comes_from_the_backends_that_offer_it():
    """`tune`, `validate --rpc` and `run --emulate` name what each offering backend declares, and no backend by hand."""
    from edgeresnet.targets.tvm.backend import TvmBackend

    def text(*args: str) -> str:
        return " ".join(run_cli(*args).stdout.split())
    assert f"tvm (rpi4, rpi5, jetson-orin-cpu, arm64, x86-64): {TvmBackend.tuner}" in text("tune", "--help")
    assert f"tvm: {TvmBackend.farm_address}, {TvmBackend.farm_help}" in text("validate", "--help")
    assert TvmBackend.emulation_help in text("run", "--help")
    commands = (REPO / "edgeresnet" / "commands").glob("*.py")
    assert [p.name for p in commands if re.search(r"\bTVM\b|MetaSchedule|RPC tracker", p.read_text())] == []


@pytest.mark.parametrize("fixture", ["ort_artifact", "jetson_artifact"])
def test_verify_imports_neither_torch_nor_tvm(fixture, request):
    outcome = _light_run("verify", str(request.getfixturevalue(fixture)), "--json")
    assert outcome == {"code": 0, "heavy": []}


def test_the_probe_notices_a_heavy_command(tmp_path):
    # `export --help` is light too, so probe a command that must load torch: a real export.
    outcome = _light_run("export", "--model", "resnet20", "-o", str(tmp_path / "m.onnx"), "--json")
    assert outcome["code"] == 0 and "torch" in outcome["heavy"]
