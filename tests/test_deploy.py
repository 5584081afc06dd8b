"""deploy/: the Kubernetes manifests, rendered and validated offline against the Kubernetes schemas.

`kubectl --dry-run=client` wants an API server; kubernetes-validate carries the schemas. The
kustomizations are rendered here by a small renderer that does what deploy/ uses of kustomize
(resources, labels, images, strategic-merge patches); where kubectl is installed, a test checks
that `kubectl kustomize` renders the same objects.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
VARIANTS = {"cpu": DEPLOY / "base", "gpu": DEPLOY / "gpu"}
KUBERNETES = ("1.30.0", "1.37.0")  # an old release still in support, and the newest the schemas know
IMAGE_UID = 1034  # the image's `bentoml` user (BentoML's BENTO_UID_GID, USER in container/Containerfile.j2)


# --- rendering ---------------------------------------------------------------------------------


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _merge(base, patch):
    """Strategic merge as kustomize applies it to these objects: maps merge, lists of named maps
    merge by name (``$patch: delete`` removes an entry), other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    named = lambda items: all(isinstance(item, dict) and "name" in item for item in items)  # noqa: E731
    if isinstance(base, list) and isinstance(patch, list) and base and named(base) and named(patch):
        merged = {item["name"]: item for item in base}
        for item in patch:
            if item.get("$patch") == "delete":
                merged.pop(item["name"], None)
            else:
                merged[item["name"]] = _merge(merged[item["name"]], item) if item["name"] in merged else item
        return list(merged.values())
    return copy.deepcopy(patch)


def render(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize DIRECTORY` prints, for the features deploy/ uses."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(spec) - {"apiVersion", "kind", "resources", "labels", "images", "patches"}
    assert not unknown, f"{directory}: the test renderer does not know {unknown}"
    objects = []
    for resource in spec.get("resources", []):
        path = (directory / resource).resolve()
        objects += render(path) if path.is_dir() else _documents(path)
    for entry in spec.get("labels", []):
        assert not entry.get("includeSelectors") and not entry.get("includeTemplates")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for patch_ref in spec.get("patches", []):
        for patch in _documents(directory / patch_ref["path"]):
            key = (patch["kind"], patch["metadata"]["name"])
            index = next(i for i, o in enumerate(objects) if (o["kind"], o["metadata"]["name"]) == key)
            objects[index] = _merge(objects[index], patch)
    for image in spec.get("images", []):
        for obj in objects:
            for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return objects


def _one(objects: list[dict], kind: str, name: str = "ko-sts") -> dict:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


RENDERED = {variant: render(directory) for variant, directory in VARIANTS.items()}


# --- schemas -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_valid_kubernetes(variant, version):
    objects = RENDERED[variant]
    assert {o["kind"] for o in objects} == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{variant} {obj['kind']}/{obj['metadata']['name']} on Kubernetes {version}: {error.message}")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_renderer_matches_kubectl_kustomize(variant):
    printed = subprocess.run(
        ["kubectl", "kustomize", str(VARIANTS[variant])], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(yaml.safe_load_all(printed), key=key) == sorted(RENDERED[variant], key=key)


# --- what the objects promise ------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_run_hardened_with_probes_and_resources(variant):
    deployment = _one(RENDERED[variant], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # the one writable place: BENTOML_HOME=/tmp/bentoml (container/Containerfile.j2)
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys()
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 3000, "grpc": 50051}
    # SIGTERM comes after preStop; the grace period covers it and a request at the service's timeout
    assert pod["terminationGracePeriodSeconds"] >= 5 + 60
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_cpu_pods_size_onnx_runtime_threads_to_their_cpu_limit():
    [container] = _one(RENDERED["cpu"], "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ko-sts:cpu"
    threads = _env(container)["KO_STS_THREADS"]["valueFrom"]["resourceFieldRef"]
    assert threads["resource"] == "limits.cpu" and threads["containerName"] == container["name"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_gpu_variant_asks_for_one_gpu_and_the_torch_backend():
    pod = _one(RENDERED["gpu"], "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "ko-sts:gpu"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = _env(container)
    assert env["KO_STS_BACKEND"]["value"] == "torch" and env["KO_STS_DEVICE"]["value"] == "cuda"
    assert "KO_STS_THREADS" not in env
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_reach_the_pods_on_http_and_grpc(variant):
    pod_labels = _one(RENDERED[variant], "Deployment")["spec"]["template"]["metadata"]["labels"]
    for name in ("ko-sts", "ko-sts-headless"):
        service = _one(RENDERED[variant], "Service", name)
        assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in _one(RENDERED[variant], "Service")["spec"]["ports"]}
    assert ports == {"http": (3000, "http"), "grpc": (50051, "grpc")}
    assert _one(RENDERED[variant], "Service", "ko-sts-headless")["spec"]["clusterIP"] == "None"


# --- autoscaling and Prometheus ----------------------------------------------------------------

ADAPTER = yaml.safe_load((DEPLOY / "prometheus/adapter-rules.yaml").read_text(encoding="utf-8"))
ADAPTED = {rule["name"]["as"]: rule for rule in ADAPTER["rules"]["custom"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_autoscaler_scales_on_load_with_cpu_as_the_fallback(variant):
    hpa = _one(RENDERED[variant], "HorizontalPodAutoscaler")
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ko-sts"}
    assert 1 <= spec["minReplicas"] < spec["maxReplicas"]
    pods = [m["pods"]["metric"]["name"] for m in spec["metrics"] if m["type"] == "Pods"]
    assert pods == ["ko_sts_requests_in_flight", "ko_sts_queue_pairs"]
    assert set(pods) <= ADAPTED.keys(), "every custom metric needs a prometheus-adapter rule"
    assert [m["resource"]["name"] for m in spec["metrics"] if m["type"] == "Resource"] == ["cpu"]


def test_adapter_rules_read_series_the_service_exports():
    """The series behind the custom metrics: BentoML's in-progress gauge and the engine's queue gauge."""
    import bentoml

    exported = {  # series -> (file that defines it, what it says there)
        "bentoml_service_request_in_progress": (
            Path(bentoml.__file__).parent / "_internal/server/http/instruments.py",
            'name="request_in_progress"',
        ),
        "ko_sts_queue_pairs": (REPO / "serving/metrics.py", '"ko_sts_queue_pairs"'),
    }
    for rule in ADAPTED.values():
        series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
        path, needle = exported[series]
        assert needle in path.read_text(encoding="utf-8"), f"{series}: {needle} not in {path}"
        overrides = rule["resources"]["overrides"]
        assert overrides == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert 'endpoint=~"/score|/rank"' in ADAPTED["ko_sts_requests_in_flight"]["metricsQuery"]


def test_prometheus_finds_the_pods():
    template = _one(RENDERED["cpu"], "Deployment")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "3000",
        "prometheus.io/path": "/metrics",
    }
    [job] = yaml.safe_load((DEPLOY / "prometheus/scrape-config.yaml").read_text(encoding="utf-8"))["scrape_configs"]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"] if "source_labels" in r}
    assert relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]["regex"] == "ko-sts"
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "ko-sts"
    assert {r.get("target_label") for r in job["relabel_configs"]} >= {"namespace", "pod", "__metrics_path__"}
    [monitor] = _documents(DEPLOY / "prometheus/podmonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "PodMonitor"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    port_names = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]] == [("http", "/metrics")]
    assert "http" in port_names
