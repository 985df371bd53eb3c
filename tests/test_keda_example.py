"""The KEDA example (deploy/k8s/examples/keda): the ScaledObject and TriggerAuthentication are valid against
KEDA's published CRD schemas (tests/data/keda, strict: an unknown field fails, as `kubectl apply
--validate=strict` would), the Kubernetes objects against the Kubernetes schemas, the references resolve
(Deployment, Service and port, Secret and key, the server's token), and the trigger's query, run on a real
server's /metrics with the token, reads the number of waiting processes of the type (without the token: 401).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from colonies.client.core import func_spec
from tests.conftest import make_server, setup_colony
from tests.k8s_support import K8S, Doc, load_file, named, render

EXAMPLE = K8S / "examples" / "keda"
DATA = Path(__file__).parent / "data" / "keda"
KEDA_API = "keda.sh/v1alpha1"
SELECTOR = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*)\}$')


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema with unknown fields refused (the API server prunes or, strict, rejects them)."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and not node.get(
                    "x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(out)
    return out


def keda_problems(doc: Doc) -> list[str]:
    """What KEDA's CRD schema (of the doc's kind) says is wrong with `doc`."""
    files = {"ScaledObject": "scaledobject-schema.yaml", "TriggerAuthentication": "triggerauthentication-schema.yaml"}
    if doc.get("apiVersion") != KEDA_API or doc.get("kind") not in files:
        return [f"not a {KEDA_API} ScaledObject or TriggerAuthentication: {doc.get('apiVersion')} {doc.get('kind')}"]
    schema = strict(yaml.safe_load((DATA / files[doc["kind"]]).read_text()))
    validator = jsonschema.Draft7Validator(schema)
    problems = [f"{doc['kind']} {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    if not doc.get("metadata", {}).get("name"):
        problems.append(f"{doc['kind']}: metadata.name is required")
    return problems


def example() -> list[Doc]:
    return load_file(EXAMPLE / "scaledobject.yaml")


def trigger(docs: list[Doc]) -> dict[str, Any]:
    [t] = named(docs, "ScaledObject", "colonies-executor")["spec"]["triggers"]
    return dict(t)


def test_the_schemas_are_keda_s_with_their_source() -> None:
    for name in ("scaledobject-schema.yaml", "triggerauthentication-schema.yaml"):
        head = (DATA / name).read_text()[:600]
        assert "github.com/kedacore/keda" in head and re.search(r"commit [0-9a-f]{40}", head), name
    so = yaml.safe_load((DATA / "scaledobject-schema.yaml").read_text())
    assert so["properties"]["spec"]["required"] == ["scaleTargetRef", "triggers"]


def test_keda_objects_are_valid_against_keda_s_crds() -> None:
    docs = example()
    keda = [d for d in docs if d["apiVersion"] == KEDA_API]
    assert sorted(d["kind"] for d in keda) == ["ScaledObject", "TriggerAuthentication"]
    assert [p for d in keda for p in keda_problems(d)] == []


def test_a_broken_scaledobject_fails() -> None:
    so = named(example(), "ScaledObject", "colonies-executor")
    typo = copy.deepcopy(so)
    typo["spec"]["minReplicas"] = typo["spec"].pop("minReplicaCount")  # the ExecutorDeployment's name, not KEDA's
    unexpected = "ScaledObject spec: Additional properties are not allowed ('minReplicas' was unexpected)"
    assert keda_problems(typo) == [unexpected]
    none = copy.deepcopy(so)
    del none["spec"]["triggers"]
    assert keda_problems(none) == ["ScaledObject spec: 'triggers' is a required property"]
    number = copy.deepcopy(so)
    number["spec"]["triggers"][0]["metadata"]["targetValue"] = 4  # trigger metadata is strings only
    assert keda_problems(number) == ["ScaledObject spec.triggers.0.metadata.targetValue: 4 is not of type 'string'"]
    fallback = copy.deepcopy(so)
    del fallback["spec"]["fallback"]["replicas"]
    assert keda_problems(fallback) == ["ScaledObject spec.fallback: 'replicas' is a required property"]


def test_the_rest_is_valid_kubernetes_and_references_resolve() -> None:
    docs = example()
    for doc in [d for d in docs if d["apiVersion"] != KEDA_API]:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version() + ".0", strict=True)
    secret = named(docs, "Secret", "colonies-metrics")
    assert set(secret["stringData"].values()) == {"REPLACE_WITH_METRICS_TOKEN"}  # a placeholder, no token
    so = named(docs, "ScaledObject", "colonies-executor")
    target = so["spec"]["scaleTargetRef"]
    executors = load_file(K8S / "base" / "executors" / "executor.yaml")
    assert named(executors, target["kind"], target["name"])["apiVersion"] == target["apiVersion"]
    assert so["spec"]["minReplicaCount"] <= so["spec"]["fallback"]["replicas"] <= so["spec"]["maxReplicaCount"]
    t = trigger(docs)
    assert (t["type"], t["metadata"]["format"], t["metadata"]["authMode"], t["metricType"]) == (
        "metrics-api", "prometheus", "bearer", "AverageValue")
    auth = named(docs, "TriggerAuthentication", t["authenticationRef"]["name"])
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "bearerToken" and ref["key"] in secret["stringData"] and ref["name"] == "colonies-metrics"
    url = httpx.URL(t["metadata"]["url"])
    service = named(load_file(K8S / "base" / "server.yaml"), "Service", url.host.split(".")[0])
    assert url.path == "/metrics" and url.port in {p["port"] for p in service["spec"]["ports"]}
    # the executors' colony is the one the query names
    config = named(load_file(K8S / "base" / "executors" / "executor-config.yaml"), "ConfigMap", "colonies-executor")
    assert f'colony="{config["data"]["COLONIES_COLONY_NAME"]}"' in t["metadata"]["valueLocation"]


def test_the_server_patch_renders_onto_the_base(tmp_path: Path) -> None:
    """In an overlay: the server gets COLONIES_METRICS and the token from the Secret the trigger reads."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not found")
    shutil.copy(EXAMPLE / "server-metrics-patch.yaml", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {os.path.relpath(K8S / 'base', tmp_path)}\n"
        "patches:\n  - path: server-metrics-patch.yaml\n")
    server = named(render(tmp_path), "Deployment", "colonies-server")
    kubernetes_validate.validate(server, kubernetes_validate.latest_version() + ".0", strict=True)
    [container] = [c for c in server["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
    env = {e["name"]: e for e in container["env"]}
    assert env["COLONIES_METRICS"]["value"] == "true"
    [ref] = named(example(), "TriggerAuthentication", "colonies-metrics")["spec"]["secretTargetRef"]
    assert env["COLONIES_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": ref["name"], "key": ref["key"]}


def read_value(page: str, location: str) -> float:
    """What KEDA's metrics-api scaler (format prometheus) reads: the sample of the family named by the
    selector whose labels include all the selector's (pkg/scalers/metrics_api_scaler.go)."""
    m = SELECTOR.match(location)
    assert m, f"not a metric selector: {location}"
    want = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', m.group(2)))
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == m.group(1) and want.items() <= sample.labels.items():
                return float(sample.value)
    raise LookupError(f"{location} not on the page")


def test_the_trigger_reads_the_waiting_count_from_a_real_server(tmp_path: Path) -> None:
    t = trigger(example())
    location = t["metadata"]["valueLocation"]
    colony = re.search(r'colony="([^"]+)"', location)
    etype = re.search(r'executortype="([^"]+)"', location)
    assert colony and etype
    token = "t" * 40
    srv = make_server(tmp_path, {"COLONIES_METRICS": "true", "COLONIES_METRICS_TOKEN": token})
    srv.start()
    try:
        col = setup_colony(srv, name=colony.group(1))
        url = f"http://127.0.0.1:{srv.port}/metrics"
        with srv.client(col.user_prvkey) as user:
            for _ in range(3):
                user.submit(func_spec("work", col.name, etype.group(1)))
            user.submit(func_spec("work", col.name, "other"))
        assert httpx.get(url, timeout=10).status_code == 401  # the names need the token
        page = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert page.status_code == 200
        assert read_value(page.text, location) == 3.0
        assert read_value(page.text, location.replace(etype.group(1), "other")) == 1.0
        with pytest.raises(LookupError):
            read_value(page.text, location.replace(colony.group(1), "nosuchcolony"))
    finally:
        srv.stop()
