"""The Helm chart in helm/ocpi-hub, rendered and linted offline by Helm's own engine.

helm-python-sdk (import name ``helm_python``) binds Helm v4's Go library through ctypes, so these tests need no
``helm`` binary, no cluster and no network: ``Chart.render`` is ``helm template`` and ``lint`` is ``helm lint``,
both validating values against values.schema.json first.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import helm_python as helm
import pytest
import yaml

pytestmark = pytest.mark.integration

CHART_DIR: Final = Path(__file__).resolve().parents[2] / "helm" / "ocpi-hub"
CI_VALUES: Final = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
RELEASE: Final = "hub"
NAMESPACE: Final = "ocpi"
FULLNAME: Final = "hub-ocpi-hub"  # "<release>-<chart>"
# Lint severities (helm's support.Severity): 1 info, 2 warning, 3 error.
LINT_WARNING: Final = 2

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def ci_values(name: str) -> dict[str, Any]:
    """The values of ci/<name>-values.yaml."""
    loaded: dict[str, Any] | None = yaml.safe_load((CHART_DIR / "ci" / f"{name}-values.yaml").read_text())
    return loaded or {}


def render_files(chart: helm.Chart, values: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Rendered text per template path, as `helm template hub -n ocpi` would print it."""
    return chart.render(dict(values or {}), name=RELEASE, namespace=NAMESPACE)


def render(chart: helm.Chart, values: Mapping[str, Any] | None = None) -> list[Manifest]:
    """Every Kubernetes object the chart renders for these values (NOTES.txt left out)."""
    objects: list[Manifest] = []
    for path, text in render_files(chart, values).items():
        if path.endswith(".txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def only(objects: list[Manifest], kind: str, name: str = FULLNAME) -> Manifest:
    """The single object of this kind and name."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return found[0]


def kinds(objects: list[Manifest]) -> set[str]:
    return {o["kind"] for o in objects}


def hub_container(deployment: Manifest) -> Manifest:
    containers: list[Manifest] = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["hub"]
    return containers[0]


def redis_url_env(deployment: Manifest) -> Manifest:
    env: list[Manifest] = hub_container(deployment)["env"]
    found = [e for e in env if e["name"] == "OCPI_HUB_REDIS_URL"]
    assert len(found) == 1
    return found[0]


def lint_problems(values: Mapping[str, Any]) -> list[str]:
    """Lint findings of warning severity or worse, as `helm lint --strict` would fail on."""
    report = helm.lint(CHART_DIR, dict(values), strict=True)
    problems = [str(m["error"]) for m in report["messages"] if int(m["severity"]) >= LINT_WARNING]
    return problems + [str(e) for e in report["errors"]]


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_lint_passes_for_every_ci_values_file(values_file: Path) -> None:
    values: dict[str, Any] = yaml.safe_load(values_file.read_text()) or {}
    assert lint_problems(values) == []


def test_ci_values_files_cover_the_documented_scenarios() -> None:
    assert {p.name for p in CI_VALUES} >= {
        "default-values.yaml",
        "existing-secret-values.yaml",
        "autoscaling-values.yaml",
        "servicemonitor-values.yaml",
    }


def test_default_deployment_is_highly_available_and_rolls_without_losing_capacity(chart: helm.Chart) -> None:
    deployment = only(render(chart, ci_values("default")), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_default_deployment_probes_health_and_readiness_on_the_http_port(chart: helm.Chart) -> None:
    container = hub_container(only(render(chart), "Deployment"))
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_default_deployment_runs_ocpi_hub_serve(chart: helm.Chart) -> None:
    container = hub_container(only(render(chart), "Deployment"))
    assert container["command"] == ["ocpi-hub"]
    assert container["args"] == ["serve"]
    assert container["image"] == "ocpi-hub:0.1.0"  # tag defaults to the chart's appVersion


def test_default_deployment_is_hardened(chart: helm.Chart) -> None:
    deployment = only(render(chart), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = hub_container(deployment)
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # The read-only root filesystem leaves /tmp as the only writable place.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert [v["emptyDir"] for v in pod["volumes"] if v["name"] == "tmp"] == [{"sizeLimit": "64Mi"}]


def test_default_deployment_sets_resource_requests_and_limits(chart: helm.Chart) -> None:
    resources = hub_container(only(render(chart), "Deployment"))["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_default_settings_reach_the_hub_through_the_configmap(chart: helm.Chart) -> None:
    objects = render(chart)
    data = only(objects, "ConfigMap")["data"]
    assert data["OCPI_HUB_HOST"] == "0.0.0.0"
    assert data["OCPI_HUB_PORT"] == "8080"
    assert data["OCPI_HUB_WORKERS"] == "1"  # one worker per pod; scale with replicas
    assert data["OCPI_HUB_PUBLIC_URL"] == f"http://{FULLNAME}.{NAMESPACE}.svc:8080"
    assert data["OCPI_HUB_MAX_BODY_SIZE"] == "10485760"  # an integer, not 1.048576e+07
    assert {"OCPI_HUB_LOG_LEVEL", "OCPI_HUB_FORWARD_TIMEOUT", "OCPI_HUB_LIVENESS_INTERVAL", "OCPI_HUB_SERVER"} <= set(
        data
    )
    assert "OCPI_HUB_REDIS_URL" not in data  # never in a ConfigMap
    deployment = only(objects, "Deployment")
    assert hub_container(deployment)["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > float(data["OCPI_HUB_DRAIN_TIME"])


def test_config_checksum_changes_with_the_settings(chart: helm.Chart) -> None:
    def checksum(values: Mapping[str, Any]) -> str:
        annotations = only(render(chart, values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/config"]
        return value

    default = checksum({})
    assert len(default) == 64
    assert checksum({"hub": {"logLevel": "debug"}}) != default


def test_hub_settings_are_passed_as_given(chart: helm.Chart) -> None:
    values = {
        "hub": {
            "publicUrl": "https://hub.example.com/",
            "countryCode": "nl",
            "partyId": "hub",
            "forwardTimeout": 2.5,
            "maxBodySize": 123456789,
        }
    }
    data = only(render(chart, values), "ConfigMap")["data"]
    assert data["OCPI_HUB_PUBLIC_URL"] == "https://hub.example.com"
    assert (data["OCPI_HUB_COUNTRY_CODE"], data["OCPI_HUB_PARTY_ID"]) == ("NL", "HUB")
    assert data["OCPI_HUB_FORWARD_TIMEOUT"] == "2.5"
    assert data["OCPI_HUB_MAX_BODY_SIZE"] == "123456789"


def test_default_values_deploy_the_embedded_redis_and_point_the_hub_at_it(chart: helm.Chart) -> None:
    objects = render(chart)
    redis_name = f"{FULLNAME}-redis"
    redis = only(objects, "Deployment", redis_name)
    assert redis["spec"]["replicas"] == 1
    assert only(objects, "Service", redis_name)["spec"]["ports"][0]["port"] == 6379
    assert redis_url_env(only(objects, "Deployment")) == {
        "name": "OCPI_HUB_REDIS_URL",
        "value": f"redis://{redis_name}:6379/0",
    }
    assert "Secret" not in kinds(objects)
    # The Redis pods must stay out of the hub's Service, PodDisruptionBudget and ServiceMonitor.
    hub_selector = only(objects, "Service")["spec"]["selector"].items()
    assert not hub_selector <= redis["spec"]["template"]["metadata"]["labels"].items()


def test_existing_secret_is_referenced_and_no_secret_is_rendered(chart: helm.Chart) -> None:
    values = ci_values("existing-secret")
    objects = render(chart, values)
    assert redis_url_env(only(objects, "Deployment")) == {
        "name": "OCPI_HUB_REDIS_URL",
        "valueFrom": {
            "secretKeyRef": {"name": values["redis"]["existingSecret"], "key": values["redis"]["existingSecretKey"]}
        },
    }
    assert "Secret" not in kinds(objects)
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"] == [FULLNAME]


def test_redis_url_is_kept_in_the_charts_own_secret(chart: helm.Chart) -> None:
    values = ci_values("autoscaling")
    objects = render(chart, values)
    secret = only(objects, "Secret")
    assert base64.b64decode(secret["data"]["redis-url"]).decode() == values["redis"]["url"]
    deployment = only(objects, "Deployment")
    assert redis_url_env(deployment)["valueFrom"] == {"secretKeyRef": {"name": FULLNAME, "key": "redis-url"}}
    assert "checksum/secret" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_autoscaling_adds_an_hpa_and_leaves_replicas_to_it(chart: helm.Chart) -> None:
    values = ci_values("autoscaling")
    objects = render(chart, values)
    hpa = only(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert hpa["spec"]["minReplicas"] == values["autoscaling"]["minReplicas"]
    assert hpa["spec"]["maxReplicas"] == values["autoscaling"]["maxReplicas"]
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert "replicas" not in only(objects, "Deployment")["spec"]


def test_no_hpa_servicemonitor_or_networkpolicy_by_default(chart: helm.Chart) -> None:
    assert kinds(render(chart)).isdisjoint({"HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"})


def test_servicemonitor_scrapes_metrics_on_the_http_port(chart: helm.Chart) -> None:
    values = ci_values("servicemonitor")
    objects = render(chart, values)
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "http",
            "path": "/metrics",
            "interval": values["serviceMonitor"]["interval"],
            "scrapeTimeout": values["serviceMonitor"]["scrapeTimeout"],
        }
    ]
    assert monitor["metadata"]["labels"].items() >= values["serviceMonitor"]["labels"].items()
    service_labels = only(objects, "Service")["metadata"]["labels"].items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels


def test_service_exposes_the_http_port(chart: helm.Chart) -> None:
    service = only(render(chart), "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]


def test_pod_disruption_budget_keeps_one_hub_pod(chart: helm.Chart) -> None:
    objects = render(chart)
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == only(objects, "Deployment")["spec"]["selector"]


def test_network_policy_admits_the_configured_peers_and_the_test_pod(chart: helm.Chart) -> None:
    values = ci_values("existing-secret")
    policy = only(render(chart, values), "NetworkPolicy")
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"][:-1] == values["networkPolicy"]["ingressFrom"]
    assert rule["from"][-1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"


def test_helm_test_pod_is_a_pinned_hook_that_fetches_healthz(chart: helm.Chart) -> None:
    pod = only(render(chart), "Pod", f"{FULLNAME}-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    assert container["image"] == "busybox:1.36.1"
    assert f"http://{FULLNAME}:8080/healthz" in container["args"]


def test_notes_use_the_real_service_port_and_explain_the_first_party(chart: helm.Chart) -> None:
    notes = render_files(chart, {"service": {"port": 9090}})["ocpi-hub/templates/NOTES.txt"]
    assert f"port-forward svc/{FULLNAME} 9090:9090" in notes
    assert "/metrics" in notes
    assert f"exec deploy/{FULLNAME} -- ocpi-hub registry add --party NL:CPO:CPO --name" in notes


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"replicaCount": 3}, "additional properties 'replicaCount' not allowed", id="unknown-top-key"),
        pytest.param(
            {"redis": {"embedded": {"persist": True}}}, "additional properties 'persist'", id="unknown-nested"
        ),
        pytest.param({"deployment": {"replicaCount": "two"}}, "got string, want integer", id="wrong-type"),
        pytest.param({"hub": {"logLevel": "loud"}}, "/hub/logLevel", id="not-in-enum"),
        pytest.param({"hub": {"countryCode": "NLD"}}, "/hub/countryCode", id="bad-pattern"),
    ],
)
def test_invalid_values_are_rejected_by_the_schema(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(chart, values)
    assert any(message in problem for problem in lint_problems(values))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            {"redis": {"embedded": {"enabled": False}}},
            "set redis.url, redis.existingSecret or redis.embedded.enabled",
            id="no-redis",
        ),
        pytest.param(
            {"redis": {"url": "redis://redis.example:6379/0"}},
            "set redis.embedded.enabled=false",
            id="embedded-and-external",
        ),
        pytest.param(
            {"hub": {"drainTime": 30}, "deployment": {"terminationGracePeriodSeconds": 30}},
            "must be greater than hub.drainTime",
            id="grace-not-above-drain",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(chart, values)


def test_schema_closes_every_object_of_ours() -> None:
    """additionalProperties: false everywhere, but for maps and pass-through Kubernetes objects."""
    schema: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    open_on_purpose = {
        "/properties/global",  # set by a parent chart when this one is a subchart
        "/definitions/stringMap",  # labels, annotations, node selector: free keys, string values
        "/definitions/kubernetesObject",  # affinity, tolerations, ...: checked by the API server
        "/properties/deployment/properties/extraEnv/items",  # Kubernetes EnvVar
    }

    def open_objects(node: object, path: str) -> Iterator[str]:
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("additionalProperties") is not False:
                yield path
            for key, child in node.items():
                yield from open_objects(child, f"{path}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                yield from open_objects(child, f"{path}/{index}")

    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert set(open_objects(schema, "")) == open_on_purpose
