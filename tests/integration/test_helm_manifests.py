"""Every object the chart renders, for every ci/*-values.yaml, against the Kubernetes API's own schemas.

`helm lint` checks templates and values, not the objects: a misspelt field (`readOnly` vs `readonly`, a probe
`scheme` in the wrong place) renders and lints fine and is only refused by the API server. kubernetes-validate
ships the OpenAPI schemas of every Kubernetes release; strict mode refuses unknown fields. Objects are checked at the
chart's kubeVersion floor and at the newest release the package knows. Custom resources (Prometheus Operator,
Gateway API) have no schema there and are listed explicitly, so that nothing else slips through unvalidated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

pytestmark = pytest.mark.integration

CHART_DIR: Final = Path(__file__).resolve().parents[2] / "helm" / "ocpi-hub"
CI_VALUES: Final = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
CUSTOM_RESOURCES: Final = frozenset(
    {
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    }
)


def kubernetes_versions() -> list[str]:
    chart: dict[str, Any] = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    floor = str(chart["kubeVersion"]).removeprefix(">=").removesuffix("-0")
    return [floor, str(kubernetes_validate.latest_version())]


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def test_the_floor_is_the_charts_kube_version() -> None:
    assert kubernetes_versions()[0] == "1.25.0"


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_rendered_object_is_valid_for_the_kubernetes_api(chart: helm.Chart, values_file: Path) -> None:
    values: dict[str, Any] = yaml.safe_load(values_file.read_text()) or {}
    problems: list[str] = []
    for path, text in chart.render(values, name="hub", namespace="ocpi").items():
        if path.endswith(".txt"):
            continue
        for manifest in yaml.safe_load_all(text):
            if not manifest:
                continue
            if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_RESOURCES:
                continue
            for version in kubernetes_versions():
                try:
                    kubernetes_validate.validate(manifest, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    where = "/".join(str(p) for p in error.path)
                    problems.append(f"{path} {manifest['kind']} (Kubernetes {version}) at {where}: {error.message}")
    assert problems == []
