"""examples/pipeline end to end: a Python executor and a command executor run a three-step workflow."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import ROOT, cli_env, run_cli, run_cli_inprocess, start_executor, stop

EXAMPLE = ROOT / "examples" / "pipeline"


def _expected(count: int, seed: int = 7) -> list[int]:
    numbers, x = [], seed
    for _ in range(count):
        x = (1103515245 * x + 12345) % 2**31
        numbers.append(x % 1000)
    numbers.sort()
    return [len(numbers), numbers[0], numbers[-1], numbers[len(numbers) // 2]]


def test_pipeline_example_runs_end_to_end(server: ServerProc, colony: ColonyKeys, tmp_path: Path) -> None:
    env = cli_env(server, colony)
    py = start_executor(env, tmp_path / "py.log", str(EXAMPLE / "steps.py"))
    shell = start_executor(env, tmp_path / "shell.log", "--commands", str(EXAMPLE / "allowlist.toml"))
    try:
        r = run_cli(
            env,
            "workflow",
            "submit",
            "--spec",
            str(EXAMPLE / "workflow.json"),
            "--wait",
            "--timeout",
            "60",
            "--json",
        )
        assert r.returncode == 0, r.stderr
        graph = json.loads(r.stdout)
        assert graph["state"] == 2
        got = json.loads(
            run_cli_inprocess(env, "workflow", "get", "-i", graph["processgraphid"], "--json").stdout
        )
        by_node = {p["spec"]["nodename"]: p for p in got["processes"]}
        assert by_node["summarize"]["out"] == _expected(20)
        assert by_node["sort"]["spec"]["conditions"]["executortype"] == "shell"
        logs = json.loads(
            run_cli_inprocess(env, "log", "get", "-p", by_node["generate"]["processid"], "--json").stdout
        )
        assert "generated 20 numbers" in "".join(entry["message"] for entry in logs)
        for proc in (py, shell):  # SIGTERM: a clean exit
            proc.send_signal(signal.SIGTERM)
        assert py.wait(20) == 0 and shell.wait(20) == 0
    finally:
        stop(py)
        stop(shell)
