"""Every command in README.md and docs/*.md runs as written, unless it is marked not to.

Commands are the lines of fenced code blocks tagged `bash`, `sh` or `shell` (a line ending
in a backslash continues on the next). A comment line just before a command marks it:

    # device-only   needs a Jetson or a board (run there, not here)
    # long          takes more than a few minutes (benchmarks, the whole set-up)
    # example       has placeholders for the reader's own files

Text may follow the marker after a colon or a space (`# long: about 10 minutes`). A block's
commands run in order in one fresh folder that mirrors the repository (so `scripts/...`,
`benchmarks/...` and `.venv/bin/...` resolve and `build/` is the test's own), with the
project's venv first on PATH. Pages added to docs/ later are picked up as they come.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKERS = ("device-only", "long", "example")
RUN_LANGUAGES = {"bash", "sh", "shell"}
MARKER_LINE = re.compile(r"^#\s*(" + "|".join(MARKERS) + r")\b")
FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
README_MAX_LINES = 160  # "at most ~150 lines": a front page, not a reference


@dataclass
class DocCommand:
    page: str
    line: int
    text: str
    marker: str | None  # why it is not run here, or None


def doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def commands_in(markdown: str, page: str = "") -> list[list[DocCommand]]:
    """The runnable blocks of a page, each a list of its commands."""
    blocks: list[list[DocCommand]] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        index += 1
        if not fence:
            continue
        closing, language = fence.group(1), fence.group(2).lower()
        block: list[DocCommand] = []
        marker = None
        while index < len(lines) and not lines[index].strip().startswith(closing):
            start, text = index + 1, lines[index].strip()
            while text.endswith("\\") and index + 1 < len(lines):
                index += 1
                text = text[:-1].rstrip() + " " + lines[index].strip()
            index += 1
            if not text:
                continue
            if text.startswith("#"):
                found = MARKER_LINE.match(text)
                marker = found.group(1) if found else marker
                continue
            block.append(DocCommand(page, start, text, marker))
            marker = None
        index += 1  # the closing fence
        if language in RUN_LANGUAGES and block:
            blocks.append(block)
    return blocks


def _all_blocks() -> list[list[DocCommand]]:
    return [block for page in doc_pages() for block in commands_in(page.read_text(), str(page.relative_to(REPO)))]


def _block_id(block: list[DocCommand]) -> str:
    return f"{block[0].page}:{block[0].line}"


def _mirror(folder: Path) -> None:
    """A folder that looks like the repository root but keeps what the commands write to itself."""
    for entry in REPO.iterdir():
        if entry.name not in ("build", ".git"):
            (folder / entry.name).symlink_to(entry)


def test_markers_skip_only_the_command_after_them():
    page = """
```bash
# long: the whole thing
bash scripts/setup.sh && \\
  echo done
# an ordinary comment
edgeresnet targets
# device-only
./build_engine.sh
```

```toml
num_classes = 37
```

```sh
# example
edgeresnet compile --weights my.pth
edgeresnet models
```
"""
    blocks = commands_in(page, "page.md")
    assert [[(c.text, c.marker) for c in block] for block in blocks] == [
        [("bash scripts/setup.sh && echo done", "long"), ("edgeresnet targets", None), ("./build_engine.sh", "device-only")],
        [("edgeresnet compile --weights my.pth", "example"), ("edgeresnet models", None)],
    ]
    assert blocks[0][1].line == 7  # the line the command starts on, counted from 1


def test_readme_is_a_front_page_that_keeps_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    commands = [c.text for block in commands_in(readme) for c in block]
    assert "bash scripts/setup.sh && .venv/bin/edgeresnet compile --target jetson" in commands
    assert "bash scripts/test.sh" in commands


def test_every_relative_link_of_the_pages_resolves():
    missing = []
    for page in doc_pages():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(REPO)} -> {target}")
    assert not missing, missing


@pytest.mark.slow
@pytest.mark.parametrize("block", _all_blocks(), ids=_block_id)
def test_documented_commands_run(block, tmp_path):
    _mirror(tmp_path)
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    runnable = [c for c in block if c.marker is None]
    if not runnable:
        pytest.skip("every command of this block is marked " + ", ".join(sorted({c.marker for c in block})))
    for command in runnable:
        result = subprocess.run(["bash", "-eo", "pipefail", "-c", command.text], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, (f"{command.page}:{command.line}: `{command.text}` exited {result.returncode}: "
                                        f"{result.stderr.strip()[-2000:]}")
