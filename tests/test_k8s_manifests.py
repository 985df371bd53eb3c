"""The Kubernetes manifests (deploy/k8s): every resource file and every rendered kustomization is valid
against the Kubernetes schemas in strict mode (kubernetes-validate: unknown fields fail), and holds
what we promise: probes, resources and non-root on every workload, placeholder-only Secrets, selectors
that select, references that resolve, and settings the server and executor actually read.

Each check is a function returning its problems; the tests assert none on our manifests, and a
broken copy of them shows each check can fail.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import typer.main

from colonies.config import Config
from colonies.protocol.crypto import generate_prvkey, id_of
from tests.k8s_support import K8S, Doc, containers, kustomizations, load_file, named, of_kind, render

# The oldest Kubernetes we claim (policy/v1 PDBs, ClusterFirstWithHostNet...) and the newest the
# validator carries.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version() + ".0")
WORKLOADS = ("Deployment", "StatefulSet")
EXPECTED = {"base", "base/executors", "overlays/postgres", "overlays/external-db", "overlays/kube-play"}
KEY_SHAPED = re.compile(r"\b[0-9a-fA-F]{64}\b|[A-Za-z0-9+/_=-]{32,}")
SECRET_NAMES = ("PRVKEY", "PASSWORD", "TOKEN", "SECRET")


def rel(path: Path) -> str:
    return path.relative_to(K8S).as_posix()


RENDERED = {rel(d): d for d in kustomizations()}


def resource_files() -> list[Path]:
    """The files the kustomizations list as resources (complete objects; patches are checked rendered)."""
    files: set[Path] = set()
    for directory in kustomizations():
        (k,) = load_file(directory / "kustomization.yaml")
        files.update(directory / r for r in k.get("resources", []) if (directory / r).is_file())
    return sorted(files)


def schema_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for doc in docs:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc.message}")
    return problems


# -- our own checks --------------------------------------------------------------------------------------
def workload_problems(docs: list[Doc]) -> list[str]:
    """Every container has readiness and liveness probes, requests and limits; every pod runs non-root,
    without a service account token or service-link variables."""
    problems = []
    for w in of_kind(docs, *WORKLOADS):
        name = f"{w['kind']}/{w['metadata']['name']}"
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("runAsUser", 0) == 0:
            problems.append(f"{name}: pod securityContext must set runAsNonRoot and a non-zero runAsUser")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a service account token it does not need")
        if pod.get("enableServiceLinks") is not False:  # Service colonies-server -> COLONIES_SERVER_PORT=tcp://...
            problems.append(f"{name}: service links would set COLONIES_*_PORT variables; set enableServiceLinks: false")
        for c in containers(w):
            cname = f"{name}/{c['name']}"
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.append(f"{cname}: no {probe}")
            for part in ("requests", "limits"):
                got = c.get("resources", {}).get(part, {})
                if not {"cpu", "memory"} <= set(got):
                    problems.append(f"{cname}: resources.{part} needs cpu and memory")
            csc = c.get("securityContext", {})
            if csc.get("allowPrivilegeEscalation") is not False or "ALL" not in csc.get("capabilities", {}).get(
                "drop", []
            ):
                problems.append(f"{cname}: must set allowPrivilegeEscalation: false and drop ALL capabilities")
            if csc.get("runAsUser") == 0 or csc.get("runAsNonRoot") is False:
                problems.append(f"{cname}: runs as root")
            ports = {p["name"] for p in c.get("ports", []) if "name" in p}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{cname}: {probe} names port {port!r}, which the container does not declare")
    return problems


def secret_values(secret: Doc) -> dict[str, str]:
    values = dict(secret.get("stringData", {}))
    values.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
    return values


def secret_problems(docs: list[Doc]) -> list[str]:
    """Secrets hold placeholders only, and keys are not put in ConfigMaps."""
    problems = []
    for s in of_kind(docs, "Secret"):
        for key, value in secret_values(s).items():
            where = f"Secret/{s['metadata']['name']} {key}"
            if any(word in key.upper() for word in SECRET_NAMES) and not value.startswith("REPLACE_WITH_"):
                problems.append(f"{where}: a real-looking value; commit a REPLACE_WITH_... placeholder")
            elif not value.startswith("REPLACE_WITH_") and KEY_SHAPED.search(value):
                problems.append(f"{where}: looks like a key")
    for cm in of_kind(docs, "ConfigMap"):
        for key, value in cm.get("data", {}).items():
            where = f"ConfigMap/{cm['metadata']['name']} {key}"
            if any(word in key.upper() for word in SECRET_NAMES):
                problems.append(f"{where}: secrets belong in a Secret")
            elif re.search(r"\b[0-9a-fA-F]{64}\b", value):
                problems.append(f"{where}: a real id or key; commit a REPLACE_WITH_... placeholder")
    return problems


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selector_problems(docs: list[Doc]) -> list[str]:
    """Workload selectors match their own pods; every Service and PDB selects pods some workload makes."""
    problems = []
    pods = {f"{w['kind']}/{w['metadata']['name']}": w["spec"]["template"]["metadata"].get("labels", {})
            for w in of_kind(docs, *WORKLOADS)}
    for w in of_kind(docs, *WORKLOADS):
        name = f"{w['kind']}/{w['metadata']['name']}"
        sel = w["spec"]["selector"].get("matchLabels", {})
        if not _selects(sel, pods[name]):
            problems.append(f"{name}: selector {sel} does not match its pod labels {pods[name]}")
        others = [o for o, labels in pods.items() if o != name and _selects(sel, labels)]
        if others:
            problems.append(f"{name}: selector also matches the pods of {others}")
    for kind, path in (("Service", ("spec", "selector")), ("PodDisruptionBudget", ("spec", "selector", "matchLabels"))):
        for d in of_kind(docs, kind):
            sel = d[path[0]].get(path[1], {})
            if len(path) == 3:
                sel = sel.get(path[2], {})
            if not any(_selects(sel, labels) for labels in pods.values()):
                problems.append(f"{kind}/{d['metadata']['name']}: selector {sel} selects no pod")
    for s in of_kind(docs, "StatefulSet"):
        svc = [d for d in of_kind(docs, "Service") if d["metadata"]["name"] == s["spec"]["serviceName"]]
        if not svc or svc[0]["spec"].get("clusterIP") != "None":
            problems.append(f"StatefulSet/{s['metadata']['name']}: serviceName needs a headless Service")
    return problems


def reference_problems(docs: list[Doc]) -> list[str]:
    """Every ConfigMap/Secret a container reads (envFrom, keyRefs) is in the same render, with the key."""
    have = {(d["kind"], d["metadata"]["name"]): set(d.get("data", {})) | set(d.get("stringData", {}))
            for d in of_kind(docs, "ConfigMap", "Secret")}
    problems = []
    for w in of_kind(docs, *WORKLOADS):
        for c in containers(w):
            refs: list[tuple[str, str, str | None]] = []
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    refs.append(("ConfigMap", src["configMapRef"]["name"], None))
                if "secretRef" in src:
                    refs.append(("Secret", src["secretRef"]["name"], None))
            for env in c.get("env", []):
                value_from = env.get("valueFrom", {})
                if "configMapKeyRef" in value_from:
                    ref = value_from["configMapKeyRef"]
                    refs.append(("ConfigMap", ref["name"], ref["key"]))
                if "secretKeyRef" in value_from:
                    ref = value_from["secretKeyRef"]
                    refs.append(("Secret", ref["name"], ref["key"]))
            for kind, name, key in refs:
                if (kind, name) not in have:
                    problems.append(f"{w['metadata']['name']}/{c['name']}: reads {kind}/{name}, not in the render")
                elif key is not None and key not in have[(kind, name)]:
                    problems.append(f"{w['metadata']['name']}/{c['name']}: {kind}/{name} has no key {key}")
    return problems


def server_env_names() -> set[str]:
    return {str(f.metadata["env"]) for f in Config.__dataclass_fields__.values()} | {"COLONIES_SERVER_HTTP_PORT"}


def executor_env_names() -> set[str]:
    """The variables `colonies executor run` reads: its options', the CLI's global ones, the log level."""
    from colonies.cli.main import app

    root: Any = typer.main.get_command(app)  # a TyperGroup (typer vendors its own click)
    params = [*root.params, *root.commands["executor"].commands["run"].params]
    return {str(p.envvar) for p in params if getattr(p, "envvar", None)} | {"COLONIES_LOG_LEVEL"}


def settings_problems(docs: list[Doc]) -> list[str]:
    """The env of the server and executor containers names variables they read (a typo is not a setting)."""
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in of_kind(docs, "ConfigMap", "Secret")}
    problems = []
    for w in of_kind(docs, *WORKLOADS):
        known = {"colonies-server": server_env_names(),
                 "colonies-executor": executor_env_names()}.get(w["metadata"]["name"])
        if known is None:
            continue
        for c in containers(w):
            names = {e["name"] for e in c.get("env", [])}
            for src in c.get("envFrom", []):
                for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if field in src and (kind, src[field]["name"]) in by_name:
                        d = by_name[(kind, src[field]["name"])]
                        names |= set(d.get("data", {})) | set(d.get("stringData", {}))
            for unknown in sorted(names - known):
                problems.append(f"{w['metadata']['name']}/{c['name']}: {unknown} is not a setting it reads")
    return problems


CHECKS = (workload_problems, secret_problems, selector_problems, reference_problems, settings_problems)


# -- the tests ---------------------------------------------------------------------------------------------
def test_every_kustomization_is_found() -> None:
    assert set(RENDERED) == EXPECTED, "a kustomization was added or removed: update EXPECTED and the docs"


@pytest.mark.parametrize("path", resource_files(), ids=lambda p: rel(p))
def test_resource_file_is_valid_in_strict_mode(path: Path) -> None:
    docs = load_file(path)
    assert docs, f"{path} holds no resource"
    assert schema_problems(docs) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rendered_kustomization_is_valid_in_strict_mode(name: str) -> None:
    docs = render(RENDERED[name])
    assert of_kind(docs, *WORKLOADS), f"{name} renders no workload"
    assert schema_problems(docs) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_rendered_kustomization_passes_our_checks(name: str, check: object) -> None:
    assert callable(check)
    assert check(render(RENDERED[name])) == []


def test_strict_validation_rejects_an_unknown_field() -> None:
    docs = render(RENDERED["base"])
    bad = copy.deepcopy(named(docs, "Deployment", "colonies-server"))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSecond"] = 10
    assert any("periodSecond" in p for p in schema_problems([bad]))


def test_checks_catch_broken_manifests() -> None:
    """Each check fails on a copy of the base broken in the way it looks for."""
    docs = render(RENDERED["base"])

    def broken(kind: str, name: str) -> tuple[list[Doc], Doc]:
        copy_ = copy.deepcopy(docs)
        return copy_, named(copy_, kind, name)

    d, w = broken("Deployment", "colonies-executor")
    del w["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    w["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0
    del w["spec"]["template"]["spec"]["enableServiceLinks"]
    assert len(workload_problems(d)) == 3

    d, s = broken("Secret", "colonies-executor-keys")
    s["stringData"]["COLONIES_COLONY_PRVKEY"] = generate_prvkey()
    assert len(secret_problems(d)) == 1
    d, s = broken("Secret", "colonies-db")
    s["stringData"]["COLONIES_DB_HOST"] = id_of(generate_prvkey())
    assert len(secret_problems(d)) == 1
    d, cm = broken("ConfigMap", "colonies-server")
    cm["data"]["COLONIES_SERVER_PRVKEY"] = generate_prvkey()
    assert len(secret_problems(d)) == 1

    d, pdb = broken("PodDisruptionBudget", "colonies-executor")
    pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "colonies-executors"
    assert len(selector_problems(d)) == 1
    d, svc = broken("Service", "colonies-etcd")
    svc["spec"]["clusterIP"] = "10.0.0.1"
    assert len(selector_problems(d)) == 1

    d, w = broken("Deployment", "colonies-server")
    w["spec"]["template"]["spec"]["containers"][0]["envFrom"][1]["secretRef"]["name"] = "colonies-dbb"
    assert len(reference_problems(d)) == 1

    d, cm = broken("ConfigMap", "colonies-server")
    cm["data"]["COLONIES_DB_HSOT"] = "x"
    assert settings_problems(d) == ["colonies-server/server: COLONIES_DB_HSOT is not a setting it reads"]


def test_server_is_replicated_on_postgresql_with_every_etcd_member() -> None:
    docs = render(RENDERED["base"])
    server = named(docs, "Deployment", "colonies-server")
    config = named(docs, "ConfigMap", "colonies-server")["data"]
    etcd = named(docs, "StatefulSet", "colonies-etcd")
    assert server["spec"]["replicas"] >= 2
    assert config["COLONIES_DB_TYPE"] == "postgresql"
    assert config["COLONIES_SERVER_BIND"] == "0.0.0.0"
    members = [f"http://colonies-etcd-{i}.{etcd['spec']['serviceName']}:2379" for i in range(etcd["spec"]["replicas"])]
    assert config["COLONIES_ETCD_ENDPOINTS"].split(",") == members
    env = {e["name"]: e for e in server["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["COLONIES_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # an etcd PDB that keeps quorum, a server PDB that leaves a replica serving
    assert named(docs, "PodDisruptionBudget", "colonies-etcd")["spec"]["minAvailable"] == etcd["spec"]["replicas"] // 2 + 1
    assert named(docs, "PodDisruptionBudget", "colonies-server")["spec"]["minAvailable"] < server["spec"]["replicas"]


def test_overlays_choose_the_database() -> None:
    pg = render(RENDERED["overlays/postgres"])
    db = secret_values(named(pg, "Secret", "colonies-db"))
    service = named(pg, "Service", "colonies-postgres")
    assert db["COLONIES_DB_HOST"] == service["metadata"]["name"]
    postgres = named(pg, "StatefulSet", "colonies-postgres")
    assert [t["metadata"]["name"] for t in postgres["spec"]["volumeClaimTemplates"]] == ["data"]
    assert {d["metadata"].get("namespace") for d in pg if d["kind"] != "Namespace"} == {"colonies"}

    ext = render(RENDERED["overlays/external-db"])
    assert not of_kind(ext, "StatefulSet") or [s["metadata"]["name"] for s in of_kind(ext, "StatefulSet")] == [
        "colonies-etcd"
    ]
    assert secret_values(named(ext, "Secret", "colonies-db"))["COLONIES_DB_HOST"].startswith("REPLACE_WITH_")


def test_images_are_the_local_builds() -> None:
    for name in sorted(EXPECTED):
        for w in of_kind(render(RENDERED[name]), *WORKLOADS):
            for c in containers(w):
                if c["image"].startswith("localhost/"):
                    assert c["image"] in {"localhost/colonies-server:dev", "localhost/colonies-executor:dev"}
                    assert c["imagePullPolicy"] in {"IfNotPresent", "Never"}
    kube_play = named(render(RENDERED["overlays/kube-play"]), "Deployment", "colonies-executor")
    assert kube_play["spec"]["template"]["spec"]["hostNetwork"] is True
    assert [c["imagePullPolicy"] for c in containers(kube_play)] == ["Never"]


def documented_overlay(tmp_path: Path, name: str) -> Path:
    """The `# NAME/kustomization.yaml` block of docs/kubernetes.md, written beside a `colonies` checkout."""
    doc = (K8S.parent.parent / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(rf"```yaml\n(# {name}/kustomization\.yaml\n.*?)```", doc, re.DOTALL)
    assert len(blocks) == 1, f"docs/kubernetes.md lost its {name}/kustomization.yaml"
    if not (tmp_path / "colonies").exists():
        (tmp_path / "colonies").symlink_to(K8S.parent.parent)
    site = tmp_path / name
    site.mkdir()
    (site / "kustomization.yaml").write_text(blocks[0])
    return site


def test_the_documented_site_overlay_renders_complete(tmp_path: Path) -> None:
    """docs/kubernetes.md step 3, as written there, with env files holding every documented key."""
    site = documented_overlay(tmp_path, "mysite")
    (site / "db.env").write_text("COLONIES_DB_HOST=colonies-postgres\nCOLONIES_DB_PORT=5432\n"
                                 "COLONIES_DB_USER=colonies\nCOLONIES_DB_NAME=colonies\nCOLONIES_DB_PASSWORD=pw\n")
    (site / "executor-keys.env").write_text(f"COLONIES_COLONY_PRVKEY={generate_prvkey()}\n")
    docs = render(site)
    assert schema_problems(docs) == []
    for check in (workload_problems, selector_problems, reference_problems, settings_problems):
        assert check(docs) == [], check.__name__
    base_db = secret_values(named(render(RENDERED["base"]), "Secret", "colonies-db"))
    assert set(secret_values(named(docs, "Secret", "colonies-db"))) == set(base_db)
    assert secret_values(named(docs, "Secret", "colonies-db"))["COLONIES_DB_PASSWORD"] == "pw"
    assert not named(docs, "ConfigMap", "colonies-server")["data"]["COLONIES_SERVER_ID"].startswith("REPLACE")
    images = {c["image"] for w in of_kind(docs, *WORKLOADS) for c in containers(w)}
    assert not any(i.startswith("localhost/") for i in images), images


def test_the_documented_kube_play_overlay_leaves_the_secret_out(tmp_path: Path) -> None:
    docs = render(documented_overlay(tmp_path, "kp"))
    assert schema_problems(docs) == []
    assert of_kind(docs, "Secret") == []
    executor = named(docs, "Deployment", "colonies-executor")
    assert [s["secretRef"]["name"] for c in containers(executor) for s in c["envFrom"] if "secretRef" in s] == [
        "colonies-executor-keys"
    ]
    assert executor["spec"]["template"]["spec"]["hostNetwork"] is True


def test_executor_probes_run_the_health_check_the_image_has(tmp_path: Path) -> None:
    """The exec probes' command line works: 0 on a fresh health file, 1 on a missing one (the image's venv
    is this package, so its interpreter is this one)."""
    executor = named(render(RENDERED["base"]), "Deployment", "colonies-executor")
    (c,) = containers(executor)
    health = tmp_path / "alive"
    for probe in ("readinessProbe", "livenessProbe"):
        command = c[probe]["exec"]["command"]
        assert command[0] == "/opt/colonies/bin/python"
        env = {**os.environ, "COLONIES_EXECUTOR_HEALTH_FILE": str(health)}
        missing = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False)
        health.touch()
        fresh = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False)
        health.unlink()
        assert (missing.returncode, fresh.returncode) == (1, 0), (probe, missing.stderr, fresh.stderr)
