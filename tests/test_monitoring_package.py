"""Unit tests of the monitoring package's pure parts: rule files, configurations, the seeded alerts, the cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rollback_drill.errors import InputError
from rollback_drill.monitoring import alertmanager, doctor, process, prometheus, rules
from rollback_drill.monitoring.errors import MonitoringProcessFailed
from rollback_drill.timing.wait import wait_until
from rollback_drill.toolchain import build
from rollback_drill.world.manifests import (
    WORLD_LABEL,
    alert_rule,
    crash_loop_alert_rule,
    pilot_alert_rule,
)

# --- rule files -----------------------------------------------------------------------------------------


def test_a_rule_file_is_named_like_prometheus_operator_names_it():
    rule = alert_rule("risk-engine", "monitoring")
    assert rules.rule_file_name(rule) == "monitoring-risk-engine-alerts.yaml"
    rule["metadata"]["uid"] = "0b8e1c2a-1111-2222-3333-444455556666"
    assert rules.rule_file_name(rule) == "monitoring-risk-engine-alerts-0b8e1c2a-1111-2222-3333-444455556666.yaml"


def test_a_rule_file_holds_the_spec_groups_and_no_added_labels():
    rule = alert_rule("risk-engine", "monitoring")
    rendered = rules.render(rule)
    assert yaml.safe_load(rendered.content) == {"groups": rule["spec"]["groups"]}
    assert "namespace" not in rendered.content


def test_a_rule_without_name_or_groups_is_refused_with_the_reason():
    with pytest.raises(InputError, match=r"metadata\.name"):
        rules.render({"metadata": {"namespace": "monitoring"}, "spec": {"groups": []}})
    with pytest.raises(InputError, match=r"spec\.groups"):
        rules.render({"metadata": {"name": "x", "namespace": "monitoring"}, "spec": {}})


def test_sync_writes_rewrites_removes_and_reports_whether_anything_changed(tmp_path):
    risk, canary = alert_rule("risk-engine", "monitoring"), alert_rule("inventory-mgmt", "monitoring")
    (tmp_path / "README").write_text("not a rule file")

    first = rules.sync(tmp_path, [risk, canary])
    assert first.written == ("monitoring-inventory-mgmt-alerts.yaml", "monitoring-risk-engine-alerts.yaml")
    assert first.changed

    assert not rules.sync(tmp_path, [risk, canary]).changed

    slower = alert_rule("risk-engine", "monitoring", failures_for="1m")
    rewritten = rules.sync(tmp_path, [slower, canary])
    assert rewritten.written == ("monitoring-risk-engine-alerts.yaml",)
    assert rewritten.removed == ()

    removed = rules.sync(tmp_path, [canary])
    assert removed.removed == ("monitoring-risk-engine-alerts.yaml",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README", "monitoring-inventory-mgmt-alerts.yaml"]


# --- the seeded alerts ------------------------------------------------------------------------------------


def test_an_expanded_repos_alerts_keep_their_name_and_labels_and_carry_severity_and_repo():
    rule = alert_rule("financial-reporting", "monitoring")
    assert rule["metadata"] == {
        "name": "financial-reporting-alerts",
        "namespace": "monitoring",
        "labels": {WORLD_LABEL: "true", "repo": "financial-reporting"},
    }
    failures, latency = rule["spec"]["groups"][0]["rules"]
    assert failures["expr"] == 'sum(rate(flow_failures_total{repo="financial-reporting"}[1h])) * 3600 > 5'
    assert failures["for"] == "10m"
    assert failures["labels"] == {"severity": "critical", "repo": "financial-reporting"}
    assert "> 150" in latency["expr"]
    assert latency["for"] == "30m"
    assert latency["labels"] == {"severity": "warning", "repo": "financial-reporting"}
    assert all(r["annotations"]["summary"] for r in (failures, latency))


def test_for_windows_are_parameters():
    rule = alert_rule("risk-engine", "monitoring", failures_for="6s", latency_for="18s")
    assert [r["for"] for r in rule["spec"]["groups"][0]["rules"]] == ["6s", "18s"]
    assert crash_loop_alert_rule("monitoring", crash_loop_for="9s")["spec"]["groups"][0]["rules"][0]["for"] == "9s"


def test_the_pilots_rules_name_only_the_pilot():
    rule = pilot_alert_rule("compliance-service", "monitoring")
    assert rule["metadata"]["name"] == "compliance-service-alerts"
    for alert in rule["spec"]["groups"][0]["rules"]:
        assert alert["labels"]["repo"] == "compliance-service"
        assert "financial-reporting" not in alert["expr"]


def test_the_crash_loop_alert_is_kubernetes_mixins():
    rule = crash_loop_alert_rule("monitoring")
    assert rule["metadata"]["namespace"] == "monitoring"
    [alert] = rule["spec"]["groups"][0]["rules"]
    assert alert["alert"] == "KubePodCrashLooping"
    assert alert["expr"] == (
        'max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff", job="kube-state-metrics"}[5m]) >= 1'
    )
    assert alert["for"] == "15m"


# --- configurations ------------------------------------------------------------------------------------------


def _receivers() -> alertmanager.Receivers:
    return alertmanager.Receivers(
        pagerduty_url="http://127.0.0.1:1/v2/enqueue",
        pagerduty_routing_key="secret-routing-key",
        slack_webhook_url="http://127.0.0.1:1/services/T/B/secret",
        smtp_smarthost="127.0.0.1:2",
    )


def test_alertmanager_pages_and_posts_critical_posts_warning_and_mails_everything():
    config = alertmanager.config(alertmanager.AlertmanagerSettings(_receivers()))
    route = config["route"]
    assert route["group_wait"] == "1000ms"
    assert route["group_interval"] == "2000ms"
    assert [r["matchers"] for r in route["routes"][:2]] == [['severity="critical"'], ['severity="warning"']]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers[route["routes"][0]["receiver"]]["pagerduty_configs"][0]["routing_key"] == "secret-routing-key"
    assert receivers[route["routes"][0]["receiver"]]["pagerduty_configs"][0]["url"] == "http://127.0.0.1:1/v2/enqueue"
    assert "slack_configs" in receivers[route["routes"][0]["receiver"]]
    assert receivers[route["routes"][1]["receiver"]]["slack_configs"][0]["api_url"].endswith("/services/T/B/secret")
    [email] = receivers["email"]["email_configs"]
    assert email["smarthost"] == "127.0.0.1:2"
    assert email["require_tls"] is False


def test_receivers_keep_their_credentials_out_of_repr():
    text = repr(_receivers())
    assert "secret" not in text


def test_prometheus_reads_the_rules_dir_scrapes_the_targets_and_alerts_the_alertmanager(tmp_path):
    settings = prometheus.PrometheusSettings(
        {"flowengine": ("127.0.0.1:8080",), "kube-state-metrics": ("127.0.0.1:8081",)},
        "127.0.0.1:9093",
        scrape_interval_s=0.5,
        evaluation_interval_s=2,
    )
    config = prometheus.config(settings, tmp_path)
    assert config["global"] == {"scrape_interval": "500ms", "evaluation_interval": "2000ms"}
    assert config["rule_files"] == [str(tmp_path / "*.yaml")]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert [(j["job_name"], j["static_configs"][0]["targets"]) for j in config["scrape_configs"]] == [
        ("flowengine", ["127.0.0.1:8080"]),
        ("kube-state-metrics", ["127.0.0.1:8081"]),
    ]


# --- processes ------------------------------------------------------------------------------------------------


def test_a_missing_binary_says_how_to_install_it(tmp_path):
    with pytest.raises(MonitoringProcessFailed, match="make monitoring"):
        process.start(
            "prometheus",
            [str(tmp_path / "no-such-prometheus")],
            url="http://127.0.0.1:1",
            ready_url="http://127.0.0.1:1/-/ready",
            log=tmp_path / "log",
            cwd=tmp_path,
        )


def test_a_server_that_exits_at_start_is_reported_with_its_log(tmp_path):
    argv = [sys.executable, "-c", "import sys; print('bad configuration: no such field'); sys.exit(3)"]
    with pytest.raises(MonitoringProcessFailed, match=r"(?s)exited with code 3.*bad configuration"):
        process.start(
            "alertmanager",
            argv,
            url="http://127.0.0.1:1",
            ready_url="http://127.0.0.1:1/-/ready",
            log=tmp_path / "log",
            cwd=tmp_path,
        )


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path):
    argv = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)",
    ]
    with (tmp_path / "log").open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, start_new_session=True)
    wait_until(lambda: "up" in (tmp_path / "log").read_text(), timeout_s=10, describe="the process to ignore SIGTERM")
    server = process.ServerProcess("stubborn", proc, "http://127.0.0.1:1", tmp_path / "log")
    assert process.stop(server, grace_s=0.5) is True
    assert not server.running()


# --- the toolchain -----------------------------------------------------------------------------------------------


def test_kube_state_metrics_is_cached_by_version_apart_from_the_control_plane(tmp_path):
    assert build.KUBE_STATE_METRICS not in build.COMPONENTS
    assert "kube-state-metrics-v2.20.0" not in build.cached_status(tmp_path)
    assert build.cached_status(tmp_path, build.MONITORING_COMPONENTS) == {"kube-state-metrics-v2.20.0": False}
    directory = build.component_dir(build.KUBE_STATE_METRICS, tmp_path)
    directory.mkdir(parents=True)
    (directory / "kube-state-metrics").write_text("#!/bin/sh\n")
    (directory / ".complete").write_text("v2.20.0\n")
    # A complete cache entry is used as it is: nothing is built.
    assert build.ensure_kube_state_metrics(tmp_path) == directory / "kube-state-metrics"
    assert build.cached_status(tmp_path, build.MONITORING_COMPONENTS) == {"kube-state-metrics-v2.20.0": True}


def test_packaged_promtool_test_files_exist():
    assert sorted(p.name for p in (Path(__file__).parent / "promtool").glob("*.test.yaml")) == [
        "crash-loop.test.yaml",
        "expanded-repo-failures.test.yaml",
    ]


def test_doctor_names_the_monitoring_prerequisites_and_their_fixes(tmp_path):
    found = {check.label: check for check in doctor.checks(tmp_path)}
    assert set(found) == {"Prometheus", "Alertmanager", "kube-state-metrics"}
    assert not found["kube-state-metrics"].ok
    assert "rollback-drill toolchain" in found["kube-state-metrics"].fix
    assert "make monitoring" in found["Prometheus"].fix
    if prometheus.PROMETHEUS_BINARY.exists():
        assert found["Prometheus"].ok
        assert found["Prometheus"].detail.startswith("prometheus, version 2.")
