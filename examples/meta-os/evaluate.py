"""Step 2, in the cloud: evaluate the model on the held-back data, inside a container.

The container executor runs `python3 /meta-os/evaluate.py` in the base image (python3, no numpy: so this
uses logreg.py, standard library only; /meta-os is this directory, mounted read-only). The working
directory is the process' ColonyFS directory (/cfs), where the executor synced down the label train.py
synced up. Its input, $COLONIES_INPUT, holds the parent's output (train's summary, naming the model
file). It writes the metrics next to the model (synced up again when it exits) and publishes the
metrics and the model's parameters as its output ($COLONIES_OUTPUT) for the next step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import logreg as m


def main() -> int:
    parents = json.loads(Path(os.environ["COLONIES_INPUT"]).read_text())
    trained = parents[0] if parents and isinstance(parents[0], dict) else {}
    path = Path(trained.get("model", "model/model.json"))
    params = json.loads(path.read_text())
    _, (xs, ys) = m.split(*m.dataset(params["seed"], params["samples"]), params["holdout"])
    scores: dict[str, Any] = {**m.metrics(params, xs, ys), "train_accuracy": trained.get("train_accuracy")}
    (path.parent / "metrics.json").write_text(json.dumps(scores, indent=1) + "\n")
    print(f"evaluated {path} on {scores['samples']} held-back samples with python {sys.version.split()[0]}: "
          f"accuracy {scores['accuracy']:.3f}, log loss {scores['logloss']:.3f}", flush=True)
    Path(os.environ["COLONIES_OUTPUT"]).write_text(json.dumps({"metrics": scores, "model": params}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
