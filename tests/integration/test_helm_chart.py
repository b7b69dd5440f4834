"""The Helm chart in helm/ocpi-hub, rendered and linted offline by Helm's own engine.

helm-python-sdk (import name ``helm_python``) binds Helm v4's Go library through ctypes, so these tests need no
``helm`` binary, no cluster and no network: ``Chart.render`` is ``helm template`` and ``lint`` is ``helm lint``,
both validating values against values.schema.json first.
"""

from __future__ import annotations

import base64
import json
import re
import tarfile
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
ADMIN_SERVICE: Final = f"{FULLNAME}-admin"
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
    return env_var(deployment, "OCPI_HUB_REDIS_URL")


def env_var(deployment: Manifest, name: str) -> Manifest:
    """The hub container's one `env` entry of this name."""
    env: list[Manifest] = hub_container(deployment)["env"]
    found = [e for e in env if e["name"] == name]
    assert len(found) == 1, f"expected one {name} in {env}"
    return found[0]


def pod_spec(deployment: Manifest) -> Manifest:
    spec: Manifest = deployment["spec"]["template"]["spec"]
    return spec


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
        "ingress-values.yaml",
        "httproute-values.yaml",
        "monitoring-values.yaml",
        "configfile-tls-values.yaml",
        "extra-volumes-values.yaml",
    }


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_ci_values_file_renders_and_passes_the_schema(chart: helm.Chart, values_file: Path) -> None:
    values: dict[str, Any] = yaml.safe_load(values_file.read_text()) or {}
    chart.validate_schema(values)
    objects = render(chart, values)
    assert {"Deployment", "Service", "ConfigMap"} <= kinds(objects)


def test_default_deployment_is_highly_available_and_rolls_without_losing_capacity(chart: helm.Chart) -> None:
    deployment = only(render(chart, ci_values("default")), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_default_deployment_probes_health_and_readiness_on_the_http_port(chart: helm.Chart) -> None:
    container = hub_container(only(render(chart), "Deployment"))
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    # Both listeners serve /healthz and /readyz; the probes use the public one, so they fail if it stops accepting.
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTP"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}


def test_default_deployment_runs_ocpi_hub_serve(chart: helm.Chart) -> None:
    container = hub_container(only(render(chart), "Deployment"))
    assert container["command"] == ["ocpi-hub"]
    assert container["args"] == ["serve"]
    assert container["image"] == "ocpi-hub:0.1.0"  # tag defaults to the chart's appVersion


def test_default_deployment_is_hardened(chart: helm.Chart) -> None:
    deployment = only(render(chart), "Deployment")
    pod = pod_spec(deployment)
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


def test_default_deployment_requests_resources_and_caps_memory_but_not_cpu(chart: helm.Chart) -> None:
    resources = hub_container(only(render(chart), "Deployment"))["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    # A CPU limit would have CFS throttle this latency-sensitive proxy; the request guarantees its share.
    assert set(resources["limits"]) == {"memory"}


def test_a_cpu_limit_can_still_be_set(chart: helm.Chart) -> None:
    values = {"deployment": {"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}}
    resources = hub_container(only(render(chart, values), "Deployment"))["resources"]
    assert resources["limits"] == {"cpu": "2", "memory": "1Gi"}


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
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > float(data["OCPI_HUB_DRAIN_TIME"])


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


def test_optional_objects_are_off_by_default(chart: helm.Chart) -> None:
    objects = render(chart)
    assert kinds(objects).isdisjoint(
        {"HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy", "Ingress", "HTTPRoute", "PrometheusRule"}
    )
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"] == [FULLNAME]  # no file, no dashboard


def test_servicemonitor_scrapes_metrics_on_the_admin_service_only(chart: helm.Chart) -> None:
    values = ci_values("servicemonitor")
    objects = render(chart, values)
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "admin",
            "path": "/metrics",
            "interval": values["serviceMonitor"]["interval"],
            "scrapeTimeout": values["serviceMonitor"]["scrapeTimeout"],
        }
    ]
    assert monitor["metadata"]["labels"].items() >= values["serviceMonitor"]["labels"].items()
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selected = [o for o in objects if o["kind"] == "Service" and selector <= o["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == [ADMIN_SERVICE]
    assert [p["name"] for p in selected[0]["spec"]["ports"]] == ["admin"]


def test_servicemonitor_sends_the_admin_token_when_there_is_one(chart: helm.Chart) -> None:
    values = ci_values("monitoring")
    token = values["hub"]["adminToken"]
    objects = render(chart, values)
    [endpoint] = only(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": token["existingSecret"], "key": token["existingSecretKey"]},
    }
    assert env_var(only(objects, "Deployment"), "OCPI_HUB_ADMIN_TOKEN") == {
        "name": "OCPI_HUB_ADMIN_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": token["existingSecret"], "key": token["existingSecretKey"]}},
    }


def test_no_admin_token_by_default(chart: helm.Chart) -> None:
    env = hub_container(only(render(chart), "Deployment"))["env"]
    assert "OCPI_HUB_ADMIN_TOKEN" not in {e["name"] for e in env}


def test_service_exposes_the_http_port_only(chart: helm.Chart) -> None:
    service = only(render(chart), "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]


def test_admin_listener_has_its_own_port_env_and_cluster_ip_service(chart: helm.Chart) -> None:
    objects = render(chart, {"service": {"type": "LoadBalancer"}})
    deployment = only(objects, "Deployment")
    assert {"name": "admin", "containerPort": 8081, "protocol": "TCP"} in hub_container(deployment)["ports"]
    assert only(objects, "ConfigMap")["data"]["OCPI_HUB_ADMIN_PORT"] == "8081"
    admin = only(objects, "Service", ADMIN_SERVICE)
    # Whatever exposes the OCPI port, the admin port stays inside the cluster.
    assert admin["spec"]["type"] == "ClusterIP"
    assert admin["spec"]["ports"] == [{"name": "admin", "port": 8081, "targetPort": "admin", "protocol": "TCP"}]
    assert admin["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_admin_port_follows_its_value(chart: helm.Chart) -> None:
    objects = render(chart, {"hub": {"adminPort": 9100}, "deployment": {"prometheusScrapeAnnotations": True}})
    deployment = only(objects, "Deployment")
    assert {"name": "admin", "containerPort": 9100, "protocol": "TCP"} in hub_container(deployment)["ports"]
    assert only(objects, "ConfigMap")["data"]["OCPI_HUB_ADMIN_PORT"] == "9100"
    assert only(objects, "Service", ADMIN_SERVICE)["spec"]["ports"][0]["port"] == 9100
    # Annotation-based scraping goes to the admin port too: the OCPI port serves no /metrics.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("9100", "/metrics")


def test_ingress_routes_the_public_host_to_the_http_port_with_tls(chart: helm.Chart) -> None:
    values = ci_values("ingress")
    ingress = only(render(chart, values), "Ingress")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == values["ingress"]["annotations"]
    assert spec["tls"] == values["ingress"]["tls"]
    # No ingress.hosts: the host of hub.publicUrl, the URL the hub hands to parties.
    assert spec["rules"] == [
        {
            "host": "hub.example.com",
            "http": {
                "paths": [
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": FULLNAME, "port": {"name": "http"}}},
                    }
                ]
            },
        }
    ]


def test_ingress_hosts_and_paths_are_configurable(chart: helm.Chart) -> None:
    values = {
        "ingress": {
            "enabled": True,
            "labels": {"exposure": "internet"},
            "hosts": [
                {"host": "hub.example.com", "paths": [{"path": "/ocpi", "pathType": "Prefix"}]},
                {"host": "roaming.example.org"},
            ],
        }
    }
    ingress = only(render(chart, values), "Ingress")
    assert ingress["metadata"]["labels"]["exposure"] == "internet"
    assert "ingressClassName" not in ingress["spec"]  # the cluster's default class
    assert "tls" not in ingress["spec"]
    rules = {r["host"]: [(p["path"], p["pathType"]) for p in r["http"]["paths"]] for r in ingress["spec"]["rules"]}
    assert rules == {"hub.example.com": [("/ocpi", "Prefix")], "roaming.example.org": [("/", "Prefix")]}


def test_httproute_attaches_to_the_gateway_listener_and_targets_the_http_port(chart: helm.Chart) -> None:
    values = ci_values("httproute")
    route = only(render(chart, values), "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    spec = route["spec"]
    # TLS terminates at the Gateway: the route names the HTTPS listener (sectionName), it holds no certificate.
    assert spec["parentRefs"] == values["httpRoute"]["parentRefs"]
    assert spec["hostnames"] == ["hub.example.com"]
    assert spec["rules"] == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": FULLNAME, "port": 8080}],
            "timeouts": {"request": "30s"},
        }
    ]


def test_httproute_hostname_defaults_to_the_public_url_host(chart: helm.Chart) -> None:
    gateway = [{"name": "public"}]
    with_url = {
        "hub": {"publicUrl": "https://hub.example.com:8443/"},
        "httpRoute": {"enabled": True, "parentRefs": gateway},
    }
    assert only(render(chart, with_url), "HTTPRoute")["spec"]["hostnames"] == ["hub.example.com"]
    without_url = {"httpRoute": {"enabled": True, "parentRefs": gateway}}
    assert "hostnames" not in only(render(chart, without_url), "HTTPRoute")["spec"]


def test_service_account_is_created_and_used_without_an_api_token(chart: helm.Chart) -> None:
    values = {"serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "hub@example.iam"}}}
    objects = render(chart, values)
    account = only(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    pod = pod_spec(only(objects, "Deployment"))
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["automountServiceAccountToken"] is False


def test_an_existing_service_account_can_be_used(chart: helm.Chart) -> None:
    objects = render(chart, ci_values("extra-volumes"))
    assert "ServiceAccount" not in kinds(objects)
    assert pod_spec(only(objects, "Deployment"))["serviceAccountName"] == "ocpi-hub"
    assert (
        pod_spec(only(render(chart, {"serviceAccount": {"create": False}}), "Deployment"))["serviceAccountName"]
        == "default"
    )


def test_extra_env_env_from_volumes_and_mounts_are_added(chart: helm.Chart) -> None:
    values = ci_values("extra-volumes")
    extra = values["deployment"]
    deployment = only(render(chart, values), "Deployment")
    container = hub_container(deployment)
    assert container["env"][-len(extra["extraEnv"]) :] == extra["extraEnv"]
    # After the chart's ConfigMap, so that they may override it.
    assert container["envFrom"] == [{"configMapRef": {"name": FULLNAME}}, *extra["extraEnvFrom"]]
    assert container["volumeMounts"][-len(extra["extraVolumeMounts"]) :] == extra["extraVolumeMounts"]
    assert pod_spec(deployment)["volumes"][-len(extra["extraVolumes"]) :] == extra["extraVolumes"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_config_file_is_mounted_read_only_where_ocpi_hub_config_points(chart: helm.Chart) -> None:
    values = ci_values("configfile-tls")
    objects = render(chart, values)
    config_file = only(objects, "ConfigMap", f"{FULLNAME}-config")
    assert list(config_file["data"]) == ["ocpi-hub.toml"]
    assert config_file["data"]["ocpi-hub.toml"].strip() == values["hub"]["configFile"].strip()
    path = only(objects, "ConfigMap")["data"]["OCPI_HUB_CONFIG"]
    assert path == "/etc/ocpi-hub/config/ocpi-hub.toml"
    deployment = only(objects, "Deployment")
    [mount] = [m for m in hub_container(deployment)["volumeMounts"] if m["name"] == "config-file"]
    assert mount == {"name": "config-file", "mountPath": "/etc/ocpi-hub/config", "readOnly": True}
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "config-file"]
    assert volume == {"name": "config-file", "configMap": {"name": f"{FULLNAME}-config"}}
    assert f"{mount['mountPath']}/ocpi-hub.toml" == path


def test_config_file_changes_roll_the_pods(chart: helm.Chart) -> None:
    def annotations(config_file: str) -> dict[str, str]:
        deployment = only(render(chart, {"hub": {"configFile": config_file}}), "Deployment")
        found: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return found

    first = annotations("[forward_timeouts]\ntokens = 3.0\n")
    second = annotations("[forward_timeouts]\ntokens = 4.0\n")
    assert first["checksum/config-file"] != second["checksum/config-file"]
    assert "checksum/config-file" not in annotations("")


def test_tls_files_come_from_the_secret_and_the_probes_use_https(chart: helm.Chart) -> None:
    values = ci_values("configfile-tls")
    objects = render(chart, values)
    data = only(objects, "ConfigMap")["data"]
    assert data["OCPI_HUB_CERTFILE"] == "/etc/ocpi-hub/tls/tls.crt"
    assert data["OCPI_HUB_KEYFILE"] == "/etc/ocpi-hub/tls/tls.key"
    deployment = only(objects, "Deployment")
    container = hub_container(deployment)
    assert {"name": "tls", "mountPath": "/etc/ocpi-hub/tls", "readOnly": True} in container["volumeMounts"]
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == values["hub"]["tls"]["existingSecret"]
    assert volume["secret"]["defaultMode"] == 0o440
    assert [i["key"] for i in volume["secret"]["items"]] == ["tls.crt", "tls.key"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"


def test_no_tls_files_by_default(chart: helm.Chart) -> None:
    data = only(render(chart), "ConfigMap")["data"]
    assert not {"OCPI_HUB_CERTFILE", "OCPI_HUB_KEYFILE", "OCPI_HUB_CONFIG"} & set(data)


@pytest.mark.parametrize(
    ("pre_stop", "drain", "margin", "grace"),
    [
        pytest.param(None, None, None, 30, id="defaults"),
        pytest.param(10, 12.5, 3, 26, id="fractional-drain-rounds-up"),
        pytest.param(0, 10, 5, 15, id="no-prestop"),
    ],
)
def test_grace_period_covers_the_prestop_sleep_the_drain_and_a_margin(
    chart: helm.Chart, pre_stop: int | None, drain: float | None, margin: int | None, grace: int
) -> None:
    deployment_values: dict[str, Any] = {}
    if pre_stop is not None:
        deployment_values["preStopSleepSeconds"] = pre_stop
    if margin is not None:
        deployment_values["terminationGraceMarginSeconds"] = margin
    values: dict[str, Any] = {"deployment": deployment_values, "hub": {} if drain is None else {"drainTime": drain}}
    objects = render(chart, values)
    deployment = only(objects, "Deployment")
    container = hub_container(deployment)
    drain_time = float(only(objects, "ConfigMap")["data"]["OCPI_HUB_DRAIN_TIME"])
    sleep = 0
    if "lifecycle" in container:
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        sleep = int(command[1])
    assert sleep == (5 if pre_stop is None else pre_stop)
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] == grace
    assert grace > sleep + drain_time  # SIGKILL only after the sleep and the whole drain


def test_pod_disruption_budget_keeps_one_hub_pod(chart: helm.Chart) -> None:
    objects = render(chart)
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == only(objects, "Deployment")["spec"]["selector"]


def test_network_policy_admits_the_configured_peers_and_the_test_pod(chart: helm.Chart) -> None:
    values = ci_values("existing-secret")
    policy = only(render(chart, values), "NetworkPolicy")
    [ocpi_rule] = [r for r in policy["spec"]["ingress"] if r["ports"] == [{"port": "http", "protocol": "TCP"}]]
    assert ocpi_rule["from"][:-1] == values["networkPolicy"]["ingressFrom"]
    assert ocpi_rule["from"][-1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"


def test_network_policy_admits_the_admin_port_only_from_the_admin_peers(chart: helm.Chart) -> None:
    values = ci_values("monitoring")
    policy = only(render(chart, values), "NetworkPolicy")
    rules = policy["spec"]["ingress"]
    assert len(rules) == 2
    # The OCPI port: from anywhere (ingressFrom is empty in this scenario), and never the admin port.
    [ocpi_rule] = [r for r in rules if r["ports"] == [{"port": "http", "protocol": "TCP"}]]
    assert "from" not in ocpi_rule
    [admin_rule] = [r for r in rules if r["ports"] == [{"port": "admin", "protocol": "TCP"}]]
    assert admin_rule["from"] == values["networkPolicy"]["adminFrom"]


def test_network_policy_default_admin_peers_are_prometheus_pods(chart: helm.Chart) -> None:
    policy = only(render(chart, {"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    [admin_rule] = [r for r in policy["spec"]["ingress"] if r["ports"] == [{"port": "admin", "protocol": "TCP"}]]
    assert admin_rule["from"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    ]


def test_network_policy_with_no_admin_peers_closes_the_admin_port(chart: helm.Chart) -> None:
    values = {"networkPolicy": {"enabled": True, "adminFrom": []}, "serviceMonitor": {"enabled": True}}
    files = render_files(chart, values)
    policy = only(render(chart, values), "NetworkPolicy")
    assert [r["ports"] for r in policy["spec"]["ingress"]] == [[{"port": "http", "protocol": "TCP"}]]
    assert "no peer may reach the admin port" in files["ocpi-hub/templates/NOTES.txt"]


def test_helm_test_pod_is_a_pinned_hook_that_checks_readyz_and_ocpi_versions(chart: helm.Chart) -> None:
    pod = only(render(chart), "Pod", f"{FULLNAME}-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # The hook is written in the template, not taken from values that could drop it.
    source = (CHART_DIR / "templates" / "tests" / "test-connection.yaml").read_text()
    assert '"helm.sh/hook": test' in source
    [container] = pod["spec"]["containers"]
    assert re.fullmatch(r"busybox:\d+\.\d+\.\d+", container["image"])  # pinned, never latest
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "READYZ_URL": f"http://{FULLNAME}:8080/readyz",
        "VERSIONS_URL": f"http://{FULLNAME}:8080/ocpi/versions",
    }
    assert container["command"] == ["sh", "-c"]
    [script] = container["args"]
    assert 'wget -q --no-check-certificate -O - "$READYZ_URL"' in script  # fails on anything but 2xx
    # Without a token the hub must refuse with 401: up and speaking OCPI. Any other answer fails the test.
    assert '"$VERSIONS_URL"' in script
    assert "grep -q '^ *HTTP/[0-9.]* 401'" in script
    assert "exit 1" in script
    assert "set -eu" in script
    assert pod["spec"]["activeDeadlineSeconds"] > 0


def test_helm_test_pod_uses_https_when_the_hub_serves_tls(chart: helm.Chart) -> None:
    pod = only(render(chart, ci_values("configfile-tls")), "Pod", f"{FULLNAME}-test")
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["READYZ_URL"] == f"https://{FULLNAME}:8080/readyz"
    assert env["VERSIONS_URL"] == f"https://{FULLNAME}:8080/ocpi/versions"


def test_helmignore_keeps_the_test_pod_and_the_dashboard_in_the_package(tmp_path: Path) -> None:
    patterns = [
        line.strip()
        for line in (CHART_DIR / ".helmignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not [p for p in patterns if p.startswith(("templates", "dashboards"))]
    archive = helm.package(CHART_DIR, destination=tmp_path)
    with tarfile.open(archive) as packaged:
        names = set(packaged.getnames())
    assert "ocpi-hub/templates/tests/test-connection.yaml" in names
    assert "ocpi-hub/dashboards/ocpi-hub.json" in names
    assert not {n for n in names if n.startswith("ocpi-hub/ci/")}


def test_notes_use_the_real_service_port_and_explain_the_first_party(chart: helm.Chart) -> None:
    notes = render_files(chart, {"service": {"port": 9090}})["ocpi-hub/templates/NOTES.txt"]
    assert f"port-forward svc/{FULLNAME} 9090:9090" in notes
    assert f"port-forward svc/{ADMIN_SERVICE} 8081:8081" in notes
    assert "curl http://127.0.0.1:8081/metrics" in notes
    assert "127.0.0.1:9090/metrics" not in notes
    assert f"exec deploy/{FULLNAME} -- ocpi-hub registry add --party NL:CPO:CPO --name" in notes


def test_notes_tell_how_to_send_the_admin_token(chart: helm.Chart) -> None:
    notes = render_files(chart, ci_values("monitoring"))["ocpi-hub/templates/NOTES.txt"]
    assert "get secret ocpi-hub-admin -o jsonpath='{.data.token}'" in notes
    assert 'curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8081/metrics' in notes


def test_nothing_in_the_chart_claims_redis_cluster_support() -> None:
    """The hub speaks to a standalone Redis or through Sentinel; Redis Cluster is only ever mentioned as unsupported."""
    claims: list[str] = []
    for path in [CHART_DIR / "values.yaml", CHART_DIR / "values.schema.json", *CHART_DIR.glob("templates/**/*")]:
        if path.is_file():
            text = path.read_text()
            for match in re.finditer(r"(?i)\b(redis|sentinel)\b[^.\n]{0,40}\bcluster\b", text):
                if not text[match.end() :].startswith(" is not supported"):
                    claims.append(f"{path.name}: {match.group()}")
    assert claims == []


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
        pytest.param({"redis": {"url": "http://x"}}, "/redis/url", id="redis-url-not-redis"),
        pytest.param({"redis": {"url": "redis-cluster://x:6379"}}, "/redis/url", id="redis-url-cluster"),
        pytest.param({"ingress": {"tsl": []}}, "additional properties 'tsl'", id="ingress-typo"),
        pytest.param({"httpRoute": {"hostnames": ["Hub.Example.com"]}}, "/httpRoute/hostnames/0", id="bad-hostname"),
        pytest.param({"serviceAccount": {"automount": False}}, "additional properties 'automount'", id="sa-typo"),
        pytest.param(
            {"deployment": {"terminationGracePeriodSeconds": 60}},
            "additional properties 'terminationGracePeriodSeconds'",
            id="grace-is-computed",
        ),
        pytest.param({"hub": {"adminPort": 0}}, "/hub/adminPort", id="admin-port-range"),
        pytest.param({"hub": {"tls": {"secret": "x"}}}, "additional properties 'secret'", id="tls-typo"),
        pytest.param(
            {"prometheusRule": {"alerts": {"registryDown": {"threshold": 1}}}},
            "additional properties 'threshold'",
            id="alert-without-threshold",
        ),
        pytest.param(
            {"prometheusRule": {"alerts": {"serverErrors": {"threshold": 5}}}},
            "/prometheusRule/alerts/serverErrors",
            id="ratio-above-one",
        ),
        pytest.param(
            {"prometheusRule": {"alerts": {"noLeaseHolder": {"for": "1 min"}}}}, "noLeaseHolder", id="bad-for"
        ),
        pytest.param({"grafanaDashboard": {"folder": 3}}, "got number, want string", id="dashboard-folder-type"),
        pytest.param({"deployment": {"extraVolumeMounts": [{"name": "x"}]}}, "mountPath", id="mount-without-path"),
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
        pytest.param({"hub": {"adminPort": 8080}}, "hub.adminPort (8080) must differ from hub.port", id="same-ports"),
        pytest.param({"hub": {"configFile": "port = "}}, "hub.configFile is not valid TOML", id="bad-toml"),
        pytest.param(
            {"hub": {"configFile": "drain_time = 60\n"}},
            'hub.configFile sets "drain_time", which the chart already passes as OCPI_HUB_DRAIN_TIME',
            id="file-key-overridden-by-env",
        ),
        pytest.param(
            {"hub": {"configFile": 'redis_url = "redis://x"\n'}},
            'hub.configFile sets "redis_url"',
            id="file-redis-url",
        ),
        pytest.param(
            {"hub": {"configFile": 'admin_token = "s3cret"\n'}},
            'hub.configFile sets "admin_token", a secret, in a ConfigMap',
            id="file-admin-token",
        ),
        pytest.param({"ingress": {"enabled": True}}, "ingress.enabled needs ingress.hosts", id="ingress-no-host"),
        pytest.param(
            {"httpRoute": {"enabled": True}}, "httpRoute.enabled needs httpRoute.parentRefs", id="route-no-gw"
        ),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(chart, values)


def test_schema_closes_every_object_of_ours() -> None:
    """additionalProperties: false everywhere, but for maps and pass-through Kubernetes objects."""
    schema: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    open_on_purpose = {
        "/properties/global",  # set by a parent chart when this one is a subchart
        "/definitions/stringMap",  # labels, annotations, node selector: free keys, string values
        "/definitions/kubernetesObject",  # affinity, tolerations, ...: checked by the API server
        "/definitions/namedObjectList/items",  # Kubernetes EnvVar, Volume
        "/properties/deployment/properties/extraVolumeMounts/items",  # Kubernetes VolumeMount
        "/properties/httpRoute/properties/parentRefs/items",  # Gateway API ParentReference
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
