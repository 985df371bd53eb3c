"""The meta-OS example (examples/meta-os) end to end, through the entry point its run.sh calls (metaos.py's
MetaOS): a model trained by a real Slurm batch job at `hpc-centre`, evaluated in a real podman container
at `cloud`, and answering a prediction in the /executor page of a real headless Chromium at `edge`; a
second tab watches the dashboard's DAG show each step's executor and location live.

The screenshot goes to build/screenshots/meta-os.png (docs/img/meta-os.png is a copy of one). Needs the
Slurm cluster of scripts/slurm, podman with the base image (scripts/containers), and chromium, node and
playwright-core (scripts/browser-deps): skipped without them, except in CI.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.container_support import base_image, podman, podman_env  # noqa: F401
from tests.slurm_support import jobs_tagged, slurm_env  # noqa: F401
from tests.test_browser import CHROMIUM, SCREENSHOTS, browser_tools

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "meta-os"
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def load(name: str) -> ModuleType:
    """A module of the example (its directory has a dash, so it is no package)."""
    spec = importlib.util.spec_from_file_location(f"meta_os_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_meta_os_workflow_runs_from_slurm_to_a_container_to_the_browser(
        slurm_env: dict[str, str], podman_env: dict[str, str], base_image: str, tmp_path: Path) -> None:  # noqa: F811
    browser_tools()
    metaos, logreg = load("metaos"), load("logreg")
    env = {**slurm_env, "CONTAINERS_CONF": podman_env["CONTAINERS_CONF"], "COLONIES_CHROMIUM": CHROMIUM}
    shot = SCREENSHOTS / "meta-os.png"
    shot.unlink(missing_ok=True)
    with metaos.MetaOS(tmp_path / "run", environ=env, timeout=90) as m:
        report = m.run(shot)
        steps = report.steps
        assert report.state == "successful", {n: (s.state, s.errors) for n, s in steps.items()}
        where = {n: (s.state, s.executor, s.executortype, s.location) for n, s in steps.items()}
        assert where == {"train": ("successful", "slurm-1", "hpc", "hpc-centre"),
                         "evaluate": ("successful", "podman-1", "container", "cloud"),
                         "predict": ("successful", "browser-1", "browser", "edge")}
        with m.client() as c:
            pids = {p.spec.nodename: p.processid for p in map(c.get_process, c.get_processgraph(report.graphid).processids)}
            train_log = " ".join(x.message for x in c.get_logs("meta-os", process_id=pids["train"]))
            eval_log = " ".join(x.message for x in c.get_logs("meta-os", process_id=pids["evaluate"]))
            files = {f.name for f in c.get_files("meta-os", "/meta-os/model")}
            model = json.loads(m.fs(c).download("/meta-os/model", "model.json", tmp_path / "got").read_text())
            stored_metrics = json.loads(m.fs(c).download("/meta-os/model", "metrics.json", tmp_path / "got").read_text())
        # step 1 was a Slurm job (its comment names the process) that ran train.py with numpy
        jobs = [state for state, comment in jobs_tagged().values() if f":{pids['train']}:" in comment]
        assert jobs == ["COMPLETED"], jobs_tagged()
        assert "trained on 400 samples with numpy" in train_log
        # the model is in ColonyFS, and is what evaluate read (it published the parameters it loaded)
        assert files == {"model.json", "metrics.json"}
        assert model["kind"] == "logistic" and len(model["weights"]) == 2
        evaluated = steps["evaluate"].output[0]
        assert evaluated["model"] == model
        # step 2 scored it on the 200 held-back samples, inside the container (the base image's python3)
        metrics = evaluated["metrics"]
        assert "evaluated model/model.json on 200 held-back samples" in eval_log
        assert stored_metrics == metrics
        _, (xs, ys) = logreg.split(*logreg.dataset(model["seed"], model["samples"]), model["holdout"])
        assert metrics["samples"] == len(xs) == 200
        assert metrics["accuracy"] == logreg.metrics(model, xs, ys)["accuracy"] > 0.8
        # step 3: the browser's answer is the one Python computes from the same model for the same point
        point = json.loads((EXAMPLE / "workflow.json").read_text())[2]["args"][0]
        expected: dict[str, Any] = logreg.predict(model, point)
        got = steps["predict"].output[0]
        assert (got["score"], got["label"]) == (expected["score"], expected["label"])
        assert math.isclose(got["probability"], expected["probability"], rel_tol=1e-12)
        # the dashboard showed each node's executor and location, and updated them live
        b = report.browser
        assert b["ok"], b
        assert b["pageErrors"] == []
        assert {n["node"]: n["place"] for n in b["nodes"]} == {
            "train": "slurm-1 @ hpc-centre", "evaluate": "podman-1 @ cloud", "predict": "browser-1 @ edge"}
        assert [r[3:5] for r in b["rows"]] == [["slurm-1", "hpc-centre"], ["podman-1", "cloud"], ["browser-1", "edge"]]
        predict_seen = [(s["state"], s["executor"], s["location"]) for s in b["seen"] if s["node"] == "predict"]
        assert predict_seen[0] == ("waiting", "", "edge"), b["seen"]  # the site it asks for, before the browser joined
        assert predict_seen[-1] == ("successful", "browser-1", "edge"), b["seen"]
        assert b["frames"] >= 2, b
        assert b["done"] == 1 and b["failed"] == 0
        assert shot.stat().st_size > 10000
        started = [proc for _, proc in m.procs]
    assert report.seconds < 60
    assert started and all(proc.poll() is not None for proc in started)  # the server and executors stopped
    assert podman("ps", "-a", "-q", "--filter", "label=colonies.example=meta-os").stdout.strip() == ""
