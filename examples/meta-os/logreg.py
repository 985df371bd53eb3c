"""The meta-OS example's data and model, in the standard library only (evaluate.py runs it in a container
whose python3 has no numpy; train.py adds numpy on the HPC side).

* `dataset(seed, samples)`: two overlapping Gaussian clouds in 2-D, labelled 0 and 1, drawn with
  `random.Random(seed)`, so every step that knows the seed draws the very same points. The last
  `holdout` samples are held back: train.py never sees them, evaluate.py scores the model on them.
* The model is JSON: {"kind": "logistic", "weights": [w1, w2], "bias": b, ...}. `predict` is the
  arithmetic the browser's `predict` function does (colonies/server/static/executor/executor.js):
  score = bias + w1*x1 + w2*x2 (in that order), probability = 1 / (1 + e^-score), label = p >= 0.5.
"""

from __future__ import annotations

import math
import random
from typing import Any

SEED = 7
SAMPLES = 600
HOLDOUT = 200
CENTRES = ((-1.0, -0.6), (1.0, 0.8))  # class 0, class 1; unit standard deviation

Points = list[list[float]]


def dataset(seed: int = SEED, samples: int = SAMPLES) -> tuple[Points, list[int]]:
    """`samples` labelled points, the same for the same seed on any machine."""
    rng = random.Random(seed)
    xs: Points = []
    ys: list[int] = []
    for _ in range(samples):
        label = 1 if rng.random() < 0.5 else 0
        cx, cy = CENTRES[label]
        xs.append([rng.gauss(cx, 1.0), rng.gauss(cy, 1.0)])
        ys.append(label)
    return xs, ys


def split(xs: Points, ys: list[int], holdout: int = HOLDOUT) -> tuple[tuple[Points, list[int]], tuple[Points, list[int]]]:
    """(training, held back): the held-back part is the last `holdout` samples."""
    cut = len(xs) - holdout
    return (xs[:cut], ys[:cut]), (xs[cut:], ys[cut:])


def predict(model: dict[str, Any], x: list[float]) -> dict[str, float | int]:
    """The model's answer for the point `x`: its score, and for a logistic model the probability and label."""
    weights = model["weights"]
    if len(x) != len(weights):
        raise ValueError(f"the model takes {len(weights)} features, got {len(x)}")
    score = float(model.get("bias", 0.0))
    for w, v in zip(weights, x, strict=True):
        score += w * v
    if model.get("kind", "linear") != "logistic":
        return {"score": score}
    p = 1.0 / (1.0 + math.exp(-score))
    return {"score": score, "probability": p, "label": 1 if p >= 0.5 else 0}


def metrics(model: dict[str, Any], xs: Points, ys: list[int]) -> dict[str, float | int]:
    """Accuracy, precision, recall and log loss of a logistic model on labelled points."""
    tp = fp = fn = correct = 0
    loss = 0.0
    for x, y in zip(xs, ys, strict=True):
        r = predict(model, x)
        p = min(max(float(r["probability"]), 1e-12), 1 - 1e-12)
        loss -= math.log(p) if y else math.log(1 - p)
        label = int(r["label"])
        correct += label == y
        tp += label == 1 and y == 1
        fp += label == 1 and y == 0
        fn += label == 0 and y == 1
    n = len(xs)
    return {"samples": n, "accuracy": correct / n, "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0, "logloss": loss / n}
