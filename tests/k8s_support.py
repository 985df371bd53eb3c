"""Kubernetes manifests for the tests: find the kustomizations under deploy/k8s and render them.

Rendering uses a real kustomize, the one built into `kubectl` (`kubectl kustomize DIR`: kubectl 1.32
with kustomize 5.5 is on the project's machine image). Without kubectl the tests skip on a laptop and
fail in CI.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from tests.conftest import need_service

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"

Doc = dict[str, Any]


def kustomizations() -> list[Path]:
    """Every directory under deploy/k8s holding a kustomization.yaml (bases and overlays)."""
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        need_service("kubectl", "kubectl (for `kubectl kustomize`, kustomize >= 4.1) not found; Debian's "
                     "kubernetes-client 1.20 embeds kustomize 2.0.3, too old for `labels:` and `patches:`")
        raise AssertionError("unreachable")
    return path


def render(directory: Path) -> list[Doc]:
    """`kubectl kustomize DIRECTORY`, parsed: one dict per resource (fresh objects on every call)."""
    return [d for d in yaml.safe_load_all(_kustomize(directory)) if d]


@functools.cache
def _kustomize(directory: Path) -> str:
    r = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60,
                       check=False)
    if r.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed: {r.stderr}")
    return r.stdout


def load_file(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def dump(docs: list[Doc]) -> str:
    return str(yaml.safe_dump_all(docs, sort_keys=False))


def of_kind(docs: list[Doc], *kinds: str) -> list[Doc]:
    return [d for d in docs if d["kind"] in kinds]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def containers(workload: Doc) -> Iterator[Doc]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]
