"""The README's commands run as written: every `kesheng` line names real options, and the quick
ones are run, in README order, from a copy of the repository's examples and labels."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from kesheng.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT.parent / "shared" / "data" / "pool"
# Commands that need minutes, a cluster, a server left running or the network are only parsed.
SLOW_OR_LONG_RUNNING = ("serve", "promote", "--config training/configs/default.json", "transformer", "--config training/configs/billing.json", "runs/billing")


def readme_commands() -> list[str]:
    """Every `kesheng ...` command of the README's bash blocks, continuation lines joined."""
    commands, block, pending = [], False, ""
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            block = line.strip() == "```bash"
            continue
        if not block:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("kesheng "):
            commands.append(line)
    return commands


def _args(command: str) -> list[str]:
    return shlex.split(command, comments=True)[1:]


COMMANDS = readme_commands()


def test_the_readme_has_commands():
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses(command):
    # Unknown options and missing arguments fail here, whether or not the command is run below.
    group = typer.main.get_command(app)
    args = _args(command)
    with group.make_context("kesheng", list(args), resilient_parsing=False) as context:
        name, sub, rest = group.resolve_command(context, args)
        assert name, command
        sub.make_context(name, rest, parent=context)


@pytest.mark.slow
def test_quick_readme_commands_run_as_written(tmp_path):
    if not POOL.is_dir():
        pytest.skip("the README's training and evaluation commands read the public corpora at ../shared/data/pool")
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("examples", "training", "models"):
        os.symlink(ROOT / name, work / name)
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    (work / "runs").mkdir()
    env = {**os.environ, "KESHENG_REGISTRY": str(tmp_path / "registry")}
    env.pop("KESHENG_MODEL", None)
    ran = []
    for command in COMMANDS:
        if any(marker in command for marker in SLOW_OR_LONG_RUNNING):
            continue
        result = subprocess.run([sys.executable, "-m", "kesheng", *_args(command)], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        ran.append(command)
    assert any(c.startswith("kesheng check-labels") for c in ran) and any(c.startswith("kesheng report") for c in ran)
    assert (work / "runs" / "report.html").is_file() and (work / "runs" / "to_label.label_config.xml").is_file()
