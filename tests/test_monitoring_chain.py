"""The monitoring chain with real processes: an exporter, Prometheus, Alertmanager and the notification sinks.

A failing repo's counter grows on a tiny /metrics exporter; the rule from ``alert_rule`` fires; Alertmanager
pages the PagerDuty sink. A silence on ``repo`` keeps a second repo from paging, and a removed rule file
leaves Prometheus with no group for its repo. Nothing is mocked; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rollback_drill.monitoring import alertmanager, prometheus, rules
from rollback_drill.monitoring.errors import MonitoringUnreachable, NotAMonitoringApi, QueryRejected
from rollback_drill.monitoring.promql import PrometheusClient
from rollback_drill.notify.sinks import Sinks
from rollback_drill.timing.wait import wait_until
from rollback_drill.world.manifests import alert_rule

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(prometheus.PROMETHEUS_BINARY).exists() and Path(alertmanager.ALERTMANAGER_BINARY).exists()),
        reason="Prometheus and Alertmanager are not installed: run `make monitoring`",
    ),
]

FAILING = "financial-reporting"
SILENCED = "risk-engine"
PILOT = "compliance-service"
PAGE_DEADLINE_S = 60.0
"""1 s scrapes and evaluations, a 1 s ``for:``, a 1 s group_wait: a page lands within seconds; the rest is a busy machine."""


class _Exporter(ThreadingHTTPServer):
    daemon_threads = True
    started = 0.0


class _Metrics(BaseHTTPRequestHandler):
    server: _Exporter

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def do_GET(self):
        # Ten failures a second for every repo, the pilot too (far above 5/h).
        failures = int((time.monotonic() - self.server.started) * 10)
        body = (
            "# TYPE flow_failures_total counter\n"
            f'flow_failures_total{{repo="{FAILING}",cause="provider"}} {failures}\n'
            f'flow_failures_total{{repo="{SILENCED}",cause="provider"}} {failures}\n'
            f'flow_failures_total{{repo="{PILOT}",cause="provider"}} {failures}\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    directory = tmp_path_factory.mktemp("monitoring")
    exporter = _Exporter(("127.0.0.1", 0), _Metrics)
    exporter.started = time.monotonic()
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    sinks = Sinks()
    endpoints = sinks.start(directory / "sinks")
    receivers = alertmanager.Receivers(
        pagerduty_url=endpoints.http_url + "/v2/enqueue",
        pagerduty_routing_key="r" * 32,
        slack_webhook_url=endpoints.http_url + alertmanager.SLACK_WEBHOOK_PATH,
        smtp_smarthost=f"{endpoints.smtp_host}:{endpoints.smtp_port}",
    )
    am = alertmanager.start(alertmanager.AlertmanagerSettings(receivers), directory / "alertmanager")
    try:
        settings = prometheus.PrometheusSettings(
            scrape_targets={"flowengine": (f"127.0.0.1:{exporter.server_address[1]}",)}, alertmanager=am.address
        )
        prom = prometheus.start(settings, directory / "prometheus")
    except BaseException:
        alertmanager.stop(am)
        raise
    yield directory, sinks, am, prom
    prometheus.stop(prom)
    alertmanager.stop(am)
    sinks.stop()
    exporter.shutdown()
    exporter.server_close()


def _pages(sinks: Sinks, repo: str) -> list[dict]:
    return [
        entry
        for entry in sinks.received()
        if entry["service"] == "pagerduty" and repo in str((entry.get("body") or {}).get("payload", {}).get("summary"))
    ]


def test_a_failing_repo_pages_pagerduty_a_silenced_one_does_not_and_a_removed_rule_is_unloaded(chain):
    _, sinks, am, prom = chain
    failing = alert_rule(FAILING, "monitoring", failures_for="1s")
    silenced = alert_rule(SILENCED, "monitoring", failures_for="1s")
    silence = alertmanager.create_silence(
        am.url,
        matchers={"repo": SILENCED},
        created_by="rollback-drill",
        comment="Step 4: expanded repo alerts",
        duration_s=600,
    )
    assert [s.id for s in alertmanager.silences(am.url) if s.state == "active"] == [silence]

    assert rules.sync(prom.rules_dir, [failing, silenced]).changed
    assert prometheus.reload(prom) == {
        "monitoring-financial-reporting-alerts.yaml",
        "monitoring-risk-engine-alerts.yaml",
    }

    started = time.monotonic()
    page = wait_until(
        lambda: _pages(sinks, FAILING),
        timeout_s=PAGE_DEADLINE_S,
        describe=f"Alertmanager to page the PagerDuty sink for {FAILING}",
        interval_s=0.25,
    )
    print(f"page after {time.monotonic() - started:.1f} s")
    assert page[0]["status"] == 202, page[0]
    assert page[0]["body"]["payload"]["severity"] == "critical"
    # The same alert also reached Slack (severity critical) and mail (everything), through the sinks' validation.
    wait_until(
        lambda: {e["service"] for e in sinks.received() if e["status"] in {200, 250}} >= {"slack", "email"},
        timeout_s=PAGE_DEADLINE_S,
        describe="Alertmanager's Slack post and mail to be accepted by the sinks",
    )

    # The silenced repo's alert fires in Prometheus and reaches Alertmanager, which suppresses it.
    wait_until(
        lambda: any(
            a.labels.get("repo") == SILENCED and a.state == "suppressed" and silence in a.silenced_by
            for a in alertmanager.received_alerts(am.url)
        ),
        timeout_s=PAGE_DEADLINE_S,
        describe=f"Alertmanager to hold {SILENCED}'s alert as suppressed by the silence",
    )
    assert prom.client().firing(repo=SILENCED)
    assert _pages(sinks, SILENCED) == []

    alertmanager.expire_silence(am.url, silence)
    assert [s.state for s in alertmanager.silences(am.url) if s.id == silence] == ["expired"]

    # Step 4 as Prometheus sees it: the rule file goes, and after a reload no group names the repo.
    change = rules.sync(prom.rules_dir, [silenced])
    assert change.removed == ("monitoring-financial-reporting-alerts.yaml",)
    prometheus.reload(prom)
    groups = prom.client().rules()
    assert [g.name for g in groups] == [f"{SILENCED}.flowengine"]
    assert not any(FAILING in rule.query for g in groups for rule in g.rules)


def test_the_pilots_failures_never_fire_an_expanded_repos_alert(chain):
    _, _, _, prom = chain
    client = prom.client()
    rules.sync(prom.rules_dir, [alert_rule(FAILING, "monitoring", failures_for="1s")])
    prometheus.reload(prom)
    # The pilot fails as hard as the expanded repo...
    wait_until(
        lambda: client.query(f'sum(rate(flow_failures_total{{repo="{PILOT}"}}[1h])) * 3600 > 5'),
        timeout_s=PAGE_DEADLINE_S,
        describe="the pilot's failure rate to pass 5 an hour",
    )
    # ...and only the expanded repo's alert fires: its rule reads its own series only.
    firing = wait_until(
        lambda: client.firing(alertname="FlowFailureRateHigh"),
        timeout_s=PAGE_DEADLINE_S,
        describe=f"{FAILING}'s FlowFailureRateHigh to fire",
    )
    assert {alert.labels["repo"] for alert in firing} == {FAILING}
    assert all(alert.labels.get("repo") != PILOT for alert in client.alerts())


def test_promql_answers_an_instant_and_a_range_query(chain):
    _, _, _, prom = chain
    client = prom.client()
    wait_until(
        lambda: client.query(f'flow_failures_total{{repo="{FAILING}"}}'),
        timeout_s=30,
        describe="the exporter's first scrape",
    )
    [sample] = client.query(f'flow_failures_total{{repo="{FAILING}"}}')
    assert sample.labels["cause"] == "provider"
    assert sample.value >= 0
    [scalar] = client.query("scalar(vector(2))")
    assert scalar == type(scalar)({}, 2.0)
    now = time.time()
    series = client.query_range(f'flow_failures_total{{repo="{FAILING}"}}', start_s=now - 30, end_s=now, step_s=1)
    assert series
    assert series[0].points


def test_promql_errors_name_the_url_and_the_fix(chain):
    _, sinks, am, prom = chain
    with pytest.raises(QueryRejected, match=prom.url):
        prom.client().query("sum(")
    with pytest.raises(NotAMonitoringApi, match="--prometheus-url"):
        PrometheusClient(sinks.endpoints.http_url).query("up")  # the sinks answer 404 there
    with pytest.raises(NotAMonitoringApi, match="--prometheus-url"):
        PrometheusClient(am.url).rules()
    with pytest.raises(MonitoringUnreachable, match=r"127\.0\.0\.1:9/api/v1/alerts did not answer.*--prometheus-url"):
        PrometheusClient("http://127.0.0.1:9").alerts()


def test_a_rule_file_prometheus_cannot_parse_is_refused_on_reload(chain):
    _, _, _, prom = chain
    broken = prom.rules_dir / "monitoring-broken-alerts.yaml"
    broken.write_text("groups:\n- name: broken\n  rules:\n  - alert: Broken\n    expr: 'sum('\n")
    try:
        with pytest.raises(QueryRejected, match="reload"):
            prometheus.reload(prom, timeout_s=5)
    finally:
        broken.unlink()
    prometheus.reload(prom)


def test_stopping_leaves_no_prometheus_or_alertmanager_process(tmp_path):
    sinks = Sinks()
    endpoints = sinks.start()
    receivers = alertmanager.Receivers(
        pagerduty_url=endpoints.http_url + "/v2/enqueue",
        pagerduty_routing_key="k" * 32,
        slack_webhook_url=endpoints.http_url + alertmanager.SLACK_WEBHOOK_PATH,
        smtp_smarthost=f"127.0.0.1:{endpoints.smtp_port}",
    )
    try:
        am = alertmanager.start(alertmanager.AlertmanagerSettings(receivers), tmp_path / "am")
        prom = prometheus.start(prometheus.PrometheusSettings({}, am.address), tmp_path / "prom")
        assert _ours(tmp_path)
        assert prometheus.stop(prom) is False  # SIGTERM was enough
        assert alertmanager.stop(am) is False
    finally:
        sinks.stop()
    assert _ours(tmp_path) == []


def _ours(directory: Path) -> list[str]:
    """Processes whose command line names ``directory``: only the servers this test started."""
    pgrep = shutil.which("pgrep")
    assert pgrep is not None
    found = subprocess.run([pgrep, "-a", "-f", str(directory)], capture_output=True, text=True, check=False)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]
