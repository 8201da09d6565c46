"""Monitoring: alert rules checked and unit-tested by promtool; dashboard and rules use only real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "prometheus" / "rules.yaml"
DASHBOARD = REPO / "monitoring" / "grafana" / "bitpredict.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`; .ci/run installs it)"
)


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 8 rules found" in check.stdout, check.stdout + check.stderr
    unit = subprocess.run(
        [PROMTOOL, "test", "rules", "rules_test.yaml"], cwd=RULES.parent, capture_output=True, text=True, timeout=60
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def exported_metrics(tmp_path: Path) -> set[str]:
    """Every metric name the transformer, KServe and the drift job really export (read from their registries)."""
    from prometheus_client import REGISTRY

    import inference.transformer  # noqa: F401  (registers the transformer's metrics)
    from bitpredict.config import load_settings
    from bitpredict.operations.monitor import Decision, DriftResult, DriftState
    from bitpredict.operations.monitor_report import export_metrics

    names = {m.name for m in REGISTRY.collect()}
    settings = load_settings(data_dir=str(tmp_path))
    result = DriftResult(0.5, ["a"], {"a": {"score": 0.01, "method": "ks"}}, 10, 10)
    path = export_metrics(result, Decision(True, False, []), DriftState(last_check_at="2026-01-01T00:00:00+00:00"),
                          settings, {"calibration_broken": True}, {"coverage_80": 0.8, "coverage_80_aci": 0.8,
                          "levels": {"0.1": 0.1}}, None)  # fmt: skip
    names |= set(re.findall(r"^# TYPE (\S+) ", Path(path).read_text(), flags=re.M))
    expanded = set(names)
    for name in names:
        expanded |= {f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_total", f"{name}_created"}
    return expanded | {"up"}


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    import yaml

    rules = yaml.safe_load(RULES.read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def test_dashboard_and_rules_query_only_metrics_that_exist(tmp_path: Path) -> None:
    known = exported_metrics(tmp_path)
    used = {name for expr in _queries() for name in re.findall(r"\b(bitpredict_\w+|request_\w+|up)\b", expr)}
    assert used, "no metric found in the queries"
    unknown = sorted(used - known)
    assert not unknown, f"queries use metrics nobody exports: {unknown}"
    titles = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    for needed in ("requests per second", "latency", "by reason", "realised close", "Drift"):
        assert any(needed.lower() in t.lower() for t in titles), needed


AMTOOL = shutil.which("amtool")
ALERTMANAGER_YML = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"


@pytest.mark.skipif(AMTOOL is None, reason="amtool not installed (Debian package `prometheus-alertmanager`)")
def test_amtool_checks_the_alertmanager_config_and_its_routes() -> None:
    """The route: every rule labelled action=rerun goes to the rerun receiver, every other rule to people."""
    import yaml

    check = subprocess.run([AMTOOL, "check-config", str(ALERTMANAGER_YML)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    routed = {}
    for rule in rules:
        labels = [f"alertname={rule['alert']}", *(f"{k}={v}" for k, v in rule["labels"].items())]
        out = subprocess.run([AMTOOL, "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", *labels],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        routed[rule["alert"]] = out.stdout.strip()
    rerun = {"BitPredictCalibrationBroken", "BitPredictPinballWorseThanNaive", "BitPredictInputDrift"}
    assert {name for name, receiver in routed.items() if receiver == "bitpredict-rerun"} == rerun, routed
    assert {receiver for name, receiver in routed.items() if name not in rerun} == {"default"}, routed
    assert {r["labels"].get("action") for r in rules if r["alert"] in rerun} == {"rerun"}
    assert {
        r["labels"].get("action") for r in rules if r["alert"] in ("BitPredictNoNewData", "BitPredictMonitorStale")
    } == {"page"}
