"""deploy/kubernetes/: every core resource validates against the Kubernetes 1.31 schemas (strict: no unknown field);
the KEDA resources (custom resources, not in those schemas) at least name their kind, target and trigger; and the
probes and grace periods agree with the server (/health, /ready, the grace period above SHUTDOWN_GRACE_S)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31"  # the first with preStop `sleep` on by default is 1.30


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


@pytest.mark.parametrize(("name", "doc"), documents(), ids=lambda value: value if isinstance(value, str) else "")
def test_each_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        assert doc["kind"] in ("ScaledObject", "TriggerAuthentication")
        if doc["kind"] == "ScaledObject":
            assert doc["spec"]["scaleTargetRef"]["name"] and doc["spec"]["triggers"]
        return
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_probes_and_grace_periods_fit_the_server() -> None:
    for name, doc in documents():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        [container] = pod["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert pod["terminationGracePeriodSeconds"] > int(env["SHUTDOWN_GRACE_S"]), name
        assert container["livenessProbe"]["httpGet"]["path"] == "/health", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready", name
