"""The chart's PrometheusRule and Grafana dashboard, checked against a real PromQL parser and the hub's own metrics.

Every alert `expr` and every dashboard query is parsed by promql-parser (the Rust PromQL parser of GreptimeDB's
promql-parser crate, with Python bindings), the rule groups are held to the shape `promtool check rules` demands
(prometheus/model/rulefmt), and every metric name an alert or panel reads must be one a hub process exposes
(`exposed_metric_names`). Rendering is offline, as in test_helm_chart.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import helm_python as helm
import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest

from hub.metrics import HubMetrics

pytestmark = pytest.mark.integration

CHART_DIR: Final = Path(__file__).resolve().parents[2] / "helm" / "ocpi-hub"
DASHBOARD_FILE: Final = CHART_DIR / "dashboards" / "ocpi-hub.json"
RELEASE: Final = "hub"
NAMESPACE: Final = "ocpi"
FULLNAME: Final = "hub-ocpi-hub"

#: What prometheus/model/rulefmt accepts in a rule group and in an alerting rule (unknown keys are errors there).
GROUP_KEYS: Final = frozenset({"name", "interval", "query_offset", "limit", "labels", "rules"})
ALERT_KEYS: Final = frozenset({"alert", "expr", "for", "keep_firing_for", "labels", "annotations"})
#: A Prometheus duration (model.ParseDuration): units from largest to smallest, each at most once.
DURATION: Final = re.compile(r"(?=.)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")
LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
#: What an alert's Go templates may use: Prometheus' template variables and functions.
TEMPLATE_VARIABLES: Final = frozenset({"labels", "value", "externalLabels", "externalURL"})
TEMPLATE_FUNCTIONS: Final = frozenset(
    {"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "printf", "title"}
)
#: The outcome label values the hub documents (ocpihub_requests_total, ocpihub_broadcast_deliveries_total).
REQUEST_OUTCOMES: Final = frozenset(
    {
        "ok",
        "client_error",
        "server_error",
        "refused",
        "rate_limited",
        "unknown_receiver",
        "receiver_suspended",
        "receiver_offline",
        "receiver_planned",
        "no_endpoint",
        "timeout",
        "unreachable",
        "overloaded",
    }
)
DELIVERY_OUTCOMES: Final = frozenset({"ok", "error", "timeout", "unreachable"})
OUTCOMES_OF: Final = {
    "ocpihub_requests_total": REQUEST_OUTCOMES,
    "ocpihub_broadcast_deliveries_total": DELIVERY_OUTCOMES,
}
EXPECTED_ALERTS: Final = {
    "OcpiHubReceiversFailing": "receiversFailing",
    "OcpiHubServerErrors": "serverErrors",
    "OcpiHubSnapshotStale": "snapshotStale",
    "OcpiHubRegistryDown": "registryDown",
    "OcpiHubNoLeaseHolder": "noLeaseHolder",
    "OcpiHubBroadcastFailures": "broadcastFailures",
}
#: Grafana's interval variables, given a value PromQL accepts as a range.
GRAFANA_INTERVALS: Final = frozenset({"__rate_interval", "__interval", "__range"})

Manifest = dict[str, Any]


# --- What a hub process exposes ------------------------------------------------------------------------------------


def exposed_metric_names() -> frozenset[str]:
    """Every series name a hub process exposes on /metrics.

    Built from the hub's own HubMetrics on a fresh registry, plus the process and platform collectors that
    prometheus-client adds to a real process, rendered by generate_latest as /metrics renders them. To check against
    a running hub instead, return ``metric_names_in(<body of GET http://<admin host>:<admin port>/metrics>)``.
    """
    registry = CollectorRegistry()
    HubMetrics(registry)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return metric_names_in(generate_latest(registry).decode())


def metric_names_in(exposition: str) -> frozenset[str]:
    """Series names of a Prometheus text exposition: from its samples, and from its TYPE lines for metric families
    that have no sample yet (a labelled metric before its first child)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
            elif kind == "summary":
                names.update(f"{name}{suffix}" for suffix in ("", "_sum", "_count"))
            elif kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            match = METRIC_NAME.match(line)
            assert match, line
            names.add(match.group())
    return frozenset(names)


# --- PromQL helpers ------------------------------------------------------------------------------------------------


def parse(expr: str) -> promql_parser.Expr:
    """The PromQL AST of expr; a syntax or type error (e.g. rate() of an instant vector) fails the test."""
    try:
        return promql_parser.parse(expr)
    except ValueError as error:
        pytest.fail(f"not valid PromQL ({error}): {expr}")


def nodes(expr: promql_parser.Expr) -> list[promql_parser.Expr]:
    found: list[promql_parser.Expr] = []

    def visit(node: promql_parser.Expr) -> bool:
        found.append(node)
        return True

    promql_parser.walk(expr, visit)
    return found


def selectors(expr: promql_parser.Expr) -> list[promql_parser.VectorSelector]:
    return [n for n in nodes(expr) if isinstance(n, promql_parser.VectorSelector)]


def metric_names(expr: promql_parser.Expr) -> set[str]:
    found = selectors(expr)
    assert all(s.name for s in found), f"a selector without a metric name in {expr}"
    return {s.name for s in found if s.name}


def kept_labels(expr: promql_parser.Expr) -> set[str] | None:
    """Labels every series of expr's result is sure to carry when it aggregates `by (...)`; None: not narrowed."""
    kept: set[str] | None = None
    for node in nodes(expr):
        if isinstance(node, promql_parser.AggregateExpr):
            modifier = node.modifier
            if modifier is None or modifier.type != promql_parser.AggModifierType.By:
                return set()
            kept = set(modifier.labels) if kept is None else kept & set(modifier.labels)
    return kept


def outcome_values(selector: promql_parser.VectorSelector) -> set[str]:
    """The outcome label values a selector names (alternatives of a regex matcher split on |)."""
    values: set[str] = set()
    for matcher in selector.matchers.matchers:
        if matcher.name == "outcome":
            if matcher.op in (promql_parser.MatchOp.Re, promql_parser.MatchOp.NotRe):
                values.update(matcher.value.split("|"))
            else:
                values.add(matcher.value)
    return values


def grafana_to_promql(query: str) -> str:
    """A Grafana query with its template variables replaced by values, as Grafana does before sending it."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return "5m" if name in GRAFANA_INTERVALS else "value"

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, query)


# --- Rendering -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def ci_values(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] | None = yaml.safe_load((CHART_DIR / "ci" / f"{name}-values.yaml").read_text())
    return loaded or {}


def render(chart: helm.Chart, values: Mapping[str, Any]) -> list[Manifest]:
    objects: list[Manifest] = []
    for path, text in chart.render(dict(values), name=RELEASE, namespace=NAMESPACE).items():
        if not path.endswith(".txt"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def the(objects: list[Manifest], kind: str, name: str = FULLNAME) -> Manifest:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}"
    return found[0]


def alerts_of(chart: helm.Chart, values: Mapping[str, Any]) -> dict[str, Manifest]:
    rule = the(render(chart, values), "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


@pytest.fixture(scope="module")
def prometheus_rule(chart: helm.Chart) -> Manifest:
    return the(render(chart, ci_values("monitoring")), "PrometheusRule")


@pytest.fixture(scope="module")
def alerts(prometheus_rule: Manifest) -> list[Manifest]:
    return [rule for group in prometheus_rule["spec"]["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def panels_of(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable's label_values() series selector."""
    queries = [
        (f"panel {panel['title']!r} target {target['refId']}", grafana_to_promql(target["expr"]))
        for panel in panels_of(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            definition = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
            assert match, f"variable {variable['name']}: {definition}"
            queries.append((f"variable {variable['name']}", grafana_to_promql(match.group(1))))
    return queries


# --- The helper itself ---------------------------------------------------------------------------------------------


def test_exposed_metric_names_read_the_hubs_registry_and_the_process_collector() -> None:
    names = exposed_metric_names()
    assert {"ocpihub_requests_total", "ocpihub_forward_duration_seconds_bucket"} <= names
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
    assert not {n for n in names if not n.startswith(("ocpihub_", "process_", "python_"))}


def test_metric_names_in_reads_samples_and_families_without_samples() -> None:
    exposition = (
        "# HELP a_total A.\n# TYPE a_total counter\n"
        "# HELP h H.\n# TYPE h histogram\n"
        '# HELP g G.\n# TYPE g gauge\ng{x="1"} 2.0\n'
    )
    assert metric_names_in(exposition) == {"a_total", "h_bucket", "h_sum", "h_count", "g"}


# --- PrometheusRule ------------------------------------------------------------------------------------------------


def test_prometheus_rule_has_the_rule_file_shape_promtool_requires(prometheus_rule: Manifest) -> None:
    assert prometheus_rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert prometheus_rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert set(prometheus_rule["spec"]) == {"groups"}
    groups = prometheus_rule["spec"]["groups"]
    assert groups
    assert len({g["name"] for g in groups}) == len(groups)
    for group in groups:
        assert set(group) <= GROUP_KEYS
        assert isinstance(group["name"], str)
        assert group["name"]
        assert group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= ALERT_KEYS, rule
            assert "record" not in rule  # alerts only
            assert METRIC_NAME.fullmatch(rule["alert"])
            assert isinstance(rule["expr"], str)
            assert rule["expr"].strip()
            assert DURATION.fullmatch(rule["for"]), rule["for"]
            assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0
            for name, value in rule["labels"].items():
                assert LABEL_NAME.fullmatch(name)
                assert isinstance(value, str)
            for name, value in rule["annotations"].items():
                assert LABEL_NAME.fullmatch(name)
                assert isinstance(value, str)
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert {"summary", "description"} <= set(rule["annotations"])


def test_every_documented_alert_is_there_once(alerts: list[Manifest]) -> None:
    assert sorted(a["alert"] for a in alerts) == sorted(EXPECTED_ALERTS)


def test_every_alert_expression_parses_as_promql(alerts: list[Manifest]) -> None:
    for alert in alerts:
        expr = parse(alert["expr"])
        # Every alert compares: it fires on the series that pass the comparison.
        assert isinstance(expr, promql_parser.BinaryExpr), alert["alert"]


def test_alerts_read_only_metrics_the_hub_exposes(alerts: list[Manifest]) -> None:
    used = {name for alert in alerts for name in metric_names(parse(alert["expr"]))}
    assert used - exposed_metric_names() == set()


def test_alerts_name_only_documented_outcomes(alerts: list[Manifest]) -> None:
    for alert in alerts:
        for selector in selectors(parse(alert["expr"])):
            assert selector.name is not None
            if selector.name in OUTCOMES_OF:
                assert outcome_values(selector) <= OUTCOMES_OF[selector.name], alert["alert"]


def test_alert_templates_use_prometheus_variables_and_only_labels_the_expression_keeps(
    alerts: list[Manifest],
) -> None:
    for alert in alerts:
        kept = kept_labels(parse(alert["expr"]))
        for name, text in alert["annotations"].items():
            assert text.count("{{") == text.count("}}"), (alert["alert"], name)
            for action in re.findall(r"\{\{(.*?)\}\}", text):
                assert set(re.findall(r"\$(\w+)", action)) <= TEMPLATE_VARIABLES, action
                functions = {part.split()[0] for part in action.split("|")[1:]}
                assert functions <= TEMPLATE_FUNCTIONS, action
            labels = set(re.findall(r"\$labels\.(\w+)", text))
            if kept is not None:
                assert labels <= kept, f"{alert['alert']} {name} uses {labels - kept}, dropped by the aggregation"


def test_alert_thresholds_durations_and_severities_come_from_values(chart: helm.Chart) -> None:
    values = ci_values("monitoring")
    alerts = alerts_of(chart, values)
    receivers = alerts["OcpiHubReceiversFailing"]
    assert receivers["expr"].rstrip().endswith("> 0.1")  # ci value; the default is 0.05
    assert receivers["for"] == "15m"
    assert alerts["OcpiHubNoLeaseHolder"]["labels"]["severity"] == "warning"
    for alert in alerts.values():
        assert alert["labels"]["team"] == "emobility"
        assert alert["annotations"]["runbook_url"] == f"https://runbooks.example.com/ocpi-hub#{alert['alert'].lower()}"

    defaults = alerts_of(chart, {"prometheusRule": {"enabled": True}})
    chart_values: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    configured = chart_values["prometheusRule"]["alerts"]
    for name, key in EXPECTED_ALERTS.items():
        alert = defaults[name]
        assert alert["for"] == configured[key]["for"]
        assert alert["labels"] == {"severity": configured[key]["severity"]}
        assert "runbook_url" not in alert["annotations"]
        if "threshold" in configured[key]:
            assert alert["expr"].rstrip().endswith(f"> {configured[key]['threshold']}")


def test_alerts_can_be_switched_off_one_by_one(chart: helm.Chart) -> None:
    values = {"prometheusRule": {"enabled": True, "alerts": {"registryDown": {"enabled": False}}}}
    assert set(alerts_of(chart, values)) == set(EXPECTED_ALERTS) - {"OcpiHubRegistryDown"}


def test_receivers_failing_is_the_share_of_timeouts_and_unreachable_receivers(alerts: list[Manifest]) -> None:
    [alert] = [a for a in alerts if a["alert"] == "OcpiHubReceiversFailing"]
    expr = parse(alert["expr"])
    assert isinstance(expr, promql_parser.BinaryExpr)
    ratio = expr.lhs
    assert isinstance(ratio, promql_parser.BinaryExpr)
    [failing] = selectors(ratio.lhs)
    [everything] = selectors(ratio.rhs)
    assert failing.name == everything.name == "ocpihub_requests_total"
    assert outcome_values(failing) == {"timeout", "unreachable"}
    assert outcome_values(everything) == set()
    assert kept_labels(expr) == {"namespace", "job", "module"}


def test_snapshot_stale_reads_the_sync_time_that_moves_on_every_poll(alerts: list[Manifest]) -> None:
    [alert] = [a for a in alerts if a["alert"] == "OcpiHubSnapshotStale"]
    expr = parse(alert["expr"])
    assert metric_names(expr) == {"ocpihub_registry_last_sync_timestamp_seconds"}
    assert any(isinstance(n, promql_parser.Call) and n.func.name == "time" for n in nodes(expr))
    assert alert["expr"].rstrip().endswith("> 60")


def test_registry_down_and_no_lease_holder(alerts: list[Manifest]) -> None:
    by_name = {a["alert"]: a for a in alerts}
    registry_down = parse(by_name["OcpiHubRegistryDown"]["expr"])
    assert metric_names(registry_down) == {"ocpihub_registry_up"}
    assert by_name["OcpiHubRegistryDown"]["expr"].rstrip().endswith("== 0")
    assert by_name["OcpiHubRegistryDown"]["for"] == "2m"
    no_leader = parse(by_name["OcpiHubNoLeaseHolder"]["expr"])
    assert isinstance(no_leader, promql_parser.BinaryExpr)
    assert isinstance(no_leader.lhs, promql_parser.AggregateExpr)
    assert str(no_leader.lhs.op) == "sum"
    assert metric_names(no_leader) == {"ocpihub_scheduler_leader"}
    assert by_name["OcpiHubNoLeaseHolder"]["expr"].rstrip().endswith("< 1")
    assert by_name["OcpiHubNoLeaseHolder"]["for"] == "1m"


def test_server_errors_and_broadcast_failures_are_ratios(alerts: list[Manifest]) -> None:
    by_name = {a["alert"]: a for a in alerts}
    server = parse(by_name["OcpiHubServerErrors"]["expr"])
    assert [outcome_values(s) for s in selectors(server)] == [{"server_error"}, set()]
    broadcasts = parse(by_name["OcpiHubBroadcastFailures"]["expr"])
    assert metric_names(broadcasts) == {"ocpihub_broadcast_deliveries_total"}
    [failed, _] = selectors(broadcasts)
    [matcher] = [m for m in failed.matchers.matchers if m.name == "outcome"]
    assert (matcher.op, matcher.value) == (promql_parser.MatchOp.NotEqual, "ok")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({}, {("namespace", NAMESPACE)}, id="namespace"),
        pytest.param(
            {"serviceMonitor": {"enabled": True}},
            {("namespace", NAMESPACE), ("job", f"{FULLNAME}-admin")},
            id="servicemonitor-job",
        ),
        pytest.param(
            {"prometheusRule": {"selector": 'cluster="eu-1", job="hub"'}}, {("cluster", "eu-1"), ("job", "hub")}
        ),
    ],
)
def test_alerts_select_this_releases_series(
    chart: helm.Chart, values: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    merged = {**values, "prometheusRule": {"enabled": True, **values.get("prometheusRule", {})}}
    for alert in alerts_of(chart, merged).values():
        for selector in selectors(parse(alert["expr"])):
            equal = {(m.name, m.value) for m in selector.matchers.matchers if m.op == promql_parser.MatchOp.Equal}
            assert expected <= equal, alert["alert"]


# --- Grafana dashboard ---------------------------------------------------------------------------------------------


def test_dashboard_is_provisionable_json(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "ocpi-hub"
    assert dashboard["title"]
    assert dashboard.get("id") is None  # Grafana assigns it
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = panels_of(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_dashboard_query_parses_as_promql(dashboard: dict[str, Any]) -> None:
    for where, query in dashboard_queries(dashboard):
        try:
            promql_parser.parse(query)
        except ValueError as error:
            pytest.fail(f"{where}: not valid PromQL ({error}): {query}")


def test_dashboard_reads_only_metrics_the_hub_exposes(dashboard: dict[str, Any]) -> None:
    used = {name for _, query in dashboard_queries(dashboard) for name in metric_names(parse(query))}
    assert used - exposed_metric_names() == set()


def test_dashboard_names_only_documented_outcomes(dashboard: dict[str, Any]) -> None:
    for where, query in dashboard_queries(dashboard):
        for selector in selectors(parse(query)):
            assert selector.name is not None
            if selector.name in OUTCOMES_OF:
                assert outcome_values(selector) <= OUTCOMES_OF[selector.name], where


def test_dashboard_covers_traffic_latency_broadcasts_scheduler_registry_and_process(dashboard: dict[str, Any]) -> None:
    queries = [query for _, query in dashboard_queries(dashboard)]
    used = {name for query in queries for name in metric_names(parse(query))}
    assert used >= {
        "ocpihub_requests_total",
        "ocpihub_forward_duration_seconds_bucket",
        "ocpihub_broadcasts_total",
        "ocpihub_broadcast_deliveries_total",
        "ocpihub_clientinfo_pushes_total",
        "ocpihub_liveness_checks_total",
        "ocpihub_registry_up",
        "ocpihub_registry_snapshot_version",
        "ocpihub_registry_last_sync_timestamp_seconds",
        "ocpihub_scheduler_leader",
        "ocpihub_parties",
        "ocpihub_outbound_connections_in_use",
        "ocpihub_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    }
    quantiles = {
        node.args[0].val
        for query in queries
        for node in nodes(parse(query))
        if isinstance(node, promql_parser.Call)
        and node.func.name == "histogram_quantile"
        and isinstance(node.args[0], promql_parser.NumberLiteral)
    }
    assert {0.5, 0.99} <= quantiles
    # Every panel target selects the dashboard's namespace and job, so two releases never mix.
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            assert 'namespace="$namespace", job="$job"' in target["expr"], panel["title"]


def test_dashboard_configmap_carries_the_sidecar_label_and_folder(chart: helm.Chart) -> None:
    configmap = the(render(chart, ci_values("monitoring")), "ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "OCPI"}
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert list(configmap["data"]) == ["ocpi-hub.json"]
    assert json.loads(configmap["data"]["ocpi-hub.json"]) == json.loads(DASHBOARD_FILE.read_text())


def test_dashboard_sidecar_label_and_namespace_are_configurable(chart: helm.Chart) -> None:
    values = {
        "grafanaDashboard": {
            "enabled": True,
            "labelKey": "grafana.example.com/dashboard",
            "labelValue": "ocpi",
            "namespace": "monitoring",
        }
    }
    configmap = the(render(chart, values), "ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana.example.com/dashboard"] == "ocpi"
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]
    assert "annotations" not in configmap["metadata"]
    assert configmap["metadata"]["namespace"] == "monitoring"
