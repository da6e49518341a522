"""The example Kubernetes manifests (deploy/kubernetes): rendered with `kubectl kustomize` when
kubectl is installed, else read file by file; workers share the app's Redis and volume."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipgeo.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"


def _documents() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl:
        rendered = subprocess.run(
            [kubectl, "kustomize", str(KUSTOMIZE_DIR)],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout  # fmt: skip
        return [doc for doc in yaml.safe_load_all(rendered) if doc]
    kustomization = yaml.safe_load((KUSTOMIZE_DIR / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [doc for doc in yaml.safe_load_all((KUSTOMIZE_DIR / name).read_text()) if doc]
    return docs


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return _documents()


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def _environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= _one(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    env |= {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    return env


def _pod(docs: list[dict[str, Any]], name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The pod spec of Deployment ``name`` and its (single) container's environment."""
    deployment = _one(docs, "Deployment", name)
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    return spec, _environment(docs, container)


def _data_claim(spec: dict[str, Any], mount_path: str) -> str:
    """The claim mounted at ``mount_path`` in the pod's container."""
    (container,) = spec["containers"]
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == mount_path]
    assert len(mounts) == 1, f"nothing mounted at {mount_path}"
    (volume,) = [v for v in spec["volumes"] if v["name"] == mounts[0]["name"]]
    return str(volume["persistentVolumeClaim"]["claimName"])


def test_every_document_is_a_kubernetes_object(docs: list[dict[str, Any]]) -> None:
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        ["Namespace", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Deployment",
         "Deployment", "Service", "Service"]
    )  # fmt: skip
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]


def test_workers_share_the_apps_redis_and_read_write_many_volume(
    docs: list[dict[str, Any]],
) -> None:
    worker, worker_env = _pod(docs, "ipgeo-worker")
    app, app_env = _pod(docs, "ipgeo-app")
    (container,) = worker["containers"]
    assert container["command"] == ["ipgeo", "worker"]
    assert container["readinessProbe"]["exec"]["command"] == ["ipgeo", "healthcheck", "--worker"]
    # The same Redis, which a Service names, and valid settings in both.
    assert worker_env["IPGEO_REDIS_URL"] == app_env["IPGEO_REDIS_URL"]
    host = worker_env["IPGEO_REDIS_URL"].split("//", 1)[1].split(":", 1)[0]
    _one(docs, "Service", host)
    Settings.from_env(worker_env)
    Settings.from_env(app_env)
    # The same data directory, on the same ReadWriteMany claim.
    data_dir = worker_env["IPGEO_DATA_DIR"]
    assert app_env["IPGEO_DATA_DIR"] == data_dir
    claim = _data_claim(worker, data_dir)
    assert _data_claim(app, data_dir) == claim
    assert _one(docs, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_app_service_reaches_the_app(docs: list[dict[str, Any]]) -> None:
    app, _ = _pod(docs, "ipgeo-app")
    service = _one(docs, "Service", "ipgeo-app")
    labels = _one(docs, "Deployment", "ipgeo-app")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["containerPort"] for c in app["containers"] for p in c["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
