"""Step 1, on the HPC centre: train a logistic regression with numpy, as a Slurm batch job.

The Slurm executor runs `train(**kwargs)` with the cluster's python ([functions.train] in slurm.toml), in
the process' ColonyFS working directory: the model goes to `model/model.json` there, and the executor
syncs that directory up to the label the workflow names (spec.fs) once the job has COMPLETED. What it
prints lands in the process log; the return value is the process output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import logreg as m
import numpy as np


def train(seed: int = m.SEED, samples: int = m.SAMPLES, holdout: int = m.HOLDOUT, epochs: int = 300,
          rate: float = 0.5, out: str = "model/model.json") -> dict[str, Any]:
    """Full-batch gradient descent on the log loss (deterministic: fixed data, zero start, fixed steps)."""
    (xs, ys), _ = m.split(*m.dataset(seed, samples), holdout)
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    w = np.zeros(x.shape[1])
    b = 0.0
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        g = p - y
        w -= rate * (x.T @ g) / len(y)
        b -= rate * float(g.mean())
    model = {"kind": "logistic", "features": ["x1", "x2"], "weights": [float(v) for v in w], "bias": b,
             "seed": seed, "samples": samples, "holdout": holdout, "epochs": epochs}
    train_accuracy = float(((x @ w + b >= 0) == (y == 1)).mean())
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model, indent=1) + "\n")
    print(f"trained on {len(y)} samples with numpy {np.__version__}: training accuracy {train_accuracy:.3f}, "
          f"wrote {path}", flush=True)
    return {"model": str(path), "train_accuracy": train_accuracy, "samples": len(y)}
