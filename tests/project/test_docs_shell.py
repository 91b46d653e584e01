"""The shell examples that run on loopback, run: the README's and Getting started's demo session
(sign, call, post a form, replay) against a real `tba-guard serve` on the demo settings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tba_guard
from tests.support import ROOT, require_tools, serving

SHELL_BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def demo_settings(folder: Path) -> Path:
    """The embedded demo settings, copied where the server's log may be written beside them."""
    copy = folder / "demo.toml"
    shutil.copy(Path(tba_guard.__file__).parent / "tools" / "demo.toml", copy)
    return copy


def shell_blocks(path: Path, containing: str) -> list[str]:
    return [b for b in SHELL_BLOCK.findall(path.read_text()) if containing in b]


def run_session(blocks: list[str], port: int, tmp_path: Path) -> list[str]:
    """Each block in one bash session, on our port, with the installed `tba-guard`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tba-guard").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m tba_guard.tools.cli "$@"\n'
    )
    (bin_dir / "tba-guard").chmod(0o755)
    marker = "=== next block ==="
    script = f"\necho '{marker}'\n".join(blocks)
    script = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    script = script.replace(".venv/bin/tba-guard", "tba-guard")
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    environment.pop("TBA_GUARD_CONFIG", None)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split(marker)


def test_the_demo_session_of_the_docs_answers_as_the_docs_say(tmp_path: Path) -> None:
    require_tools("curl", "bash", why="the examples are curl in bash")
    guide = ROOT / "docs" / "getting-started.md"
    blocks = [
        *shell_blocks(
            guide, "tba-guard sign --consumer-key demo-consumer-key --token demo-token GET"
        ),
        *shell_blocks(guide, "ORDERS="),
        *[b for b in SHELL_BLOCK.findall(guide.read_text()) if b.strip().startswith("curl -i -H")],
    ]
    assert len(blocks) == 3, blocks
    demo = demo_settings(tmp_path)
    with serving(demo) as (port, _):
        first, posted, replayed = run_session(blocks, port, tmp_path)
    assert first.startswith("HTTP/1.1 200")
    assert '"consumer_key":"demo-consumer-key"' in first.replace(" ", "")
    assert posted.lstrip().startswith("HTTP/1.1 200")
    assert replayed.lstrip().startswith("HTTP/1.1 401")
    assert "NonceUsed" in replayed


def test_the_readmes_demo_call_answers_200(tmp_path: Path) -> None:
    require_tools("curl", "bash", why="the example is curl in bash")
    blocks = shell_blocks(ROOT / "README.md", "tba-guard sign")
    assert len(blocks) == 1
    demo = demo_settings(tmp_path)
    with serving(demo) as (port, _):
        (answer,) = run_session(blocks, port, tmp_path)
    assert answer.startswith("HTTP/1.1 200")
