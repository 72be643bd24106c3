"""The FlowEngine simulator and its client: real HTTP on 127.0.0.1, a real PostgreSQL 15 TaskDB.

One TaskDB per module (initdb takes a second or two); each test gets the Phase 6/7 schema
afresh and a simulator of its own on port 0. Nothing here mocks Postgres or HTTP.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import subprocess
import sys
from datetime import UTC, datetime
from importlib import resources

import psycopg
import pytest

from rollback_drill.errors import InputError, RetryableError
from rollback_drill.flowengine import (
    CATALOGUE,
    GATES,
    INCIDENT_NAMES,
    MODEL_PROVIDERS,
    RESTRICTED_REASON,
    AllowlistView,
    FlowEngineClient,
    FlowEngineRequestError,
    FlowEngineUnavailable,
    Simulator,
)
from rollback_drill.ports import free_port
from rollback_drill.runbook.decision import decide_live
from rollback_drill.taskdb import providers
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.timing.wait import wait_until

PILOT = "compliance-service"
PHASE_6 = (
    "financial-reporting", "customer-analytics", "inventory-mgmt", "risk-engine", "payments-gateway",
    "audit-trail", "kyc-onboarding", "ledger-sync", "fraud-signals", "treasury-reports",
)  # fmt: skip
PHASE_7 = PHASE_6 + tuple(f"org-repo-{i:02d}" for i in range(1, 41))
MIGRATIONS = resources.files("rollback_drill") / "data" / "migrations"
FORWARD = ("20251104_001_pilot.sql", "20251117_001_phase6_repo_quotas.sql", "20251208_001_phase7_model_routing.sql")
LOG_LINE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) .+$")
CONVENTIONS_INCIDENTS = (
    "crash-loop", "db-corruption", "security-breach", "cost-runaway", "mass-failure", "quality-degradation",
    "slo-violation", "model-outage", "cascading-failure", "single-repo-failure", "intermittent-errors", "user-error",
)  # fmt: skip


# --- TaskDB --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def taskdb(tmp_path_factory):
    db = providers.start_local(tmp_path_factory.mktemp("taskdb"))
    yield db
    providers.stop_local(db)


def run_sql(db: TaskDB, sql: str) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(sql)


def rollback_to_pilot(db: TaskDB) -> None:
    """Step 3's own script, as the runbook runs it with psql -f."""
    run_sql(db, (MIGRATIONS / "rollback_to_pilot.sql").read_text())


def query(db: TaskDB, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def db(taskdb):
    """TaskDB at the Phase 7 schema, with no flows."""
    run_sql(taskdb, "DROP TABLE IF EXISTS model_routes, repo_quotas, tasks, flows, schema_migrations CASCADE")
    for name in FORWARD:
        run_sql(taskdb, (MIGRATIONS / name).read_text())
    return taskdb


# --- the simulator -------------------------------------------------------------------------------


class Allowlist:
    """What a Kubernetes watch would report: available pods and the union of their REPO_ALLOWLIST."""

    def __init__(self, repos=(PILOT, *PHASE_6), pods=10):
        self.view = AllowlistView(pods, frozenset(repos))

    def __call__(self) -> AllowlistView:
        return self.view

    def set(self, repos=None, pods=None):
        self.view = AllowlistView(
            self.view.available_pods if pods is None else pods,
            self.view.repos if repos is None else frozenset(repos),
        )

    def restrict_to_pilot(self):
        self.set(repos=[PILOT], pods=3)


@pytest.fixture
def allowlist():
    return Allowlist()


def make_simulator(db: TaskDB, allowlist: Allowlist, **kwargs) -> Simulator:
    seeded = random.Random(20251117)  # noqa: S311 - simulated durations, seeded for repeatable tests
    options = {"rng": seeded, "flow_latency_s": 0.002, "observe_interval_s": None} | kwargs
    return Simulator(PILOT, db.dsn, allowlist, **options)


@pytest.fixture
def sim(db, allowlist):
    simulator = make_simulator(db, allowlist)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def client(sim):
    return FlowEngineClient(sim.url, timeout_s=10)


def decision(client: FlowEngineClient):
    return decide_live(client)


def repo_signal(client: FlowEngineClient, repo: str) -> dict | None:
    return next((r for r in client.signals()["repos"] if r["repo"] == repo), None)


# --- scope -----------------------------------------------------------------------------------------


def test_pilot_is_served_and_an_expanded_repo_gets_the_clean_refusal_after_the_rollout(client, allowlist):
    assert client.repo_config(PILOT).enabled
    assert client.repo_config("financial-reporting").enabled

    allowlist.restrict_to_pilot()  # the rollout of REPO_ALLOWLIST=compliance-service completed

    pilot = client.repo_config(PILOT)
    assert (pilot.enabled, pilot.reason) == (True, None)
    refused = client.repo_config("financial-reporting")
    assert (refused.repo, refused.enabled, refused.reason) == ("financial-reporting", False, RESTRICTED_REASON)
    flow = client.generate("financial-reporting")
    assert (flow.status, flow.reason, flow.flow_id) == ("refused", RESTRICTED_REASON, None)


def test_the_allowlist_takes_effect_only_when_the_view_changes(client, allowlist):
    allowlist.set(repos=[PILOT])
    assert not client.repo_config("inventory-mgmt").enabled
    allowlist.set(repos=[PILOT, "inventory-mgmt"])  # canary re-enabled, and its pods are Ready
    assert client.repo_config("inventory-mgmt").enabled
    assert client.generate("inventory-mgmt").completed


def test_with_no_available_pod_every_flow_and_config_request_gets_503(client, allowlist):
    allowlist.set(pods=0)
    for call in (lambda: client.repo_config(PILOT), lambda: client.generate(PILOT)):
        with pytest.raises(FlowEngineUnavailable) as caught:
            call()
        assert caught.value.status == 503
        assert isinstance(caught.value, RetryableError)
        assert client.base_url in str(caught.value)
    health = client.health()
    assert (health.status, health.http_status) == ("unavailable", 503)
    allowlist.set(pods=3)
    assert client.repo_config(PILOT).enabled


# --- flows in TaskDB -------------------------------------------------------------------------------


def test_a_pilot_flow_is_recorded_in_taskdb_and_passes_strict_verification(client, db):
    flow = client.generate(PILOT, family="compliance", block_type="attestation", config={"file": "test-basel-i.json"})

    assert flow.completed
    assert 40 <= flow.duration_s <= 90, "a simulated duration within the runbook's < 120 s"
    assert 0 < flow.cost_usd < 2.0
    assert [g.name for g in flow.quality_gates] == list(GATES)
    assert flow.gates_passed == 5
    row = query(
        db, "SELECT repo, status, gates_passed, quota_checked, provider FROM flows WHERE id = %s", (flow.flow_id,)
    )
    assert row == [(PILOT, "completed", 5, True, row[0][4])]
    assert row[0][4] in MODEL_PROVIDERS
    assert query(db, "SELECT count(*) FROM tasks WHERE flow_id = %s AND status = 'passed'", (flow.flow_id,)) == [(5,)]
    assert query(db, "SELECT count(*) FROM model_routes WHERE flow_id = %s", (flow.flow_id,)) == [(1,)]

    verification = client.verify(flow.flow_id, strict=True)
    assert verification.passed
    assert verification.gates_passed == 5


def test_flows_keep_working_on_the_pilot_schema_after_step_3(client, db):
    rollback_to_pilot(db)

    flow = client.generate(PILOT)

    assert flow.completed
    assert client.verify(flow.flow_id).passed
    assert query(db, "SELECT version FROM schema_migrations") == [("20251104_001",)]


def test_stats_cover_the_flows_of_the_window(client):
    for _ in range(3):
        assert client.generate(PILOT).completed
    assert client.generate("risk-engine").completed

    stats = client.stats(window_s=600)

    assert (stats.flows, stats.failed, stats.success_rate) == (4, 0, 1.0)
    assert stats.active_repos == ("compliance-service", "risk-engine")
    assert stats.repo(PILOT).flows == 3
    assert 40 <= stats.p50_s <= stats.p95_s <= 90


def test_stats_since_an_instant_count_exactly_the_flows_started_after_it(client):
    assert client.generate(PILOT).completed
    since = datetime.now(UTC)
    for _ in range(2):
        assert client.generate("risk-engine").completed

    stats = client.stats(window_s=600, since=since)

    assert stats.flows == 2, "the flow started before the instant is not counted, every one after it is"
    assert stats.active_repos == ("risk-engine",)
    assert 0 < stats.window_s < 600, "the window reported is the one from the instant to FlowEngine's now"


def test_stats_refuse_a_since_without_a_time_zone(client):
    with pytest.raises(FlowEngineRequestError, match="time zone"):
        client.stats(since=datetime(2026, 12, 6, 19, 30))  # noqa: DTZ001 - the naive instant is the bad input


# --- incidents: every one meets its runbook criterion ---------------------------------------------


def test_the_catalogue_is_conventions_table_plus_the_soak_helper():
    assert (*CONVENTIONS_INCIDENTS, "flaky-flows") == INCIDENT_NAMES
    assert {name for name, spec in CATALOGUE.items() if spec.pilot_hit} == {"crash-loop", "db-corruption"}
    assert CATALOGUE["mass-failure"].expected_decision(10) == "P2"
    assert CATALOGUE["mass-failure"].expected_decision(50) == "P1"


@pytest.mark.parametrize("name", CONVENTIONS_INCIDENTS)
def test_each_incident_leads_the_decision_framework_to_its_expected_decision(name, client, allowlist):
    if name == "crash-loop":
        allowlist.set(pods=0)  # what the kwok CrashLoopBackOff stage does to the pods
    spec = CATALOGUE[name]

    record = client.inject(name)

    assert record.expected_decision == spec.expected_decision(len(PHASE_6))
    assert decision(client).priority == spec.expected_decision(len(PHASE_6))


def test_mass_failure_at_phase_7_is_p1(db):
    allowlist = Allowlist(repos=(PILOT, *PHASE_7), pods=10)
    with make_simulator(db, allowlist) as simulator:
        client = FlowEngineClient(simulator.url)
        assert client.inject("mass-failure").expected_decision == "P1"
        result = decision(client)
    assert result.priority == "P1"
    assert "p1-mass-concurrent-failures" in result.criteria_met


def test_mass_failure_fails_expanded_repos_only_and_scope_restriction_clears_it(client, allowlist):
    client.inject("mass-failure")

    signal = repo_signal(client, "financial-reporting")
    assert signal["failures_last_hour"] >= 6
    assert signal["cause"] == "model-timeout"
    failures = {s.label("repo"): s.value for s in client.metric_samples("flow_failures_total")}
    assert set(failures) == set(PHASE_6)
    assert min(failures.values()) >= 6
    failed = client.generate("risk-engine")
    assert (failed.status, failed.cause) == ("failed", "model-timeout")
    assert client.generate(PILOT).completed
    assert decision(client).criteria_met == ("p2-cascading-failures",)

    allowlist.restrict_to_pilot()

    assert [r["repo"] for r in client.signals()["repos"]] == [PILOT]
    assert decision(client).priority == "NONE"
    assert client.stats(window_s=3600).failed >= 60, "the history stays in TaskDB"
    assert client.logs(tail=200).errors(), "the runbook's grep finds the failures"


def test_a_crash_loop_is_backdated_and_clears_when_available_pods_return(client, allowlist):
    allowlist.set(pods=0)
    client.inject("crash-loop")

    assert client.signals()["crash_loop_unavailable_s"] >= 960
    with pytest.raises(FlowEngineUnavailable):
        client.repo_config(PILOT)

    allowlist.set(pods=3)  # Step 2: rollout restart with the pilot config

    assert client.signals()["crash_loop_unavailable_s"] == 0
    assert client.generate(PILOT).completed
    assert any("CrashLoopBackOff" in line for line in client.logs().errors())


def test_db_corruption_breaks_taskdb_for_real_and_step_3_clears_it_without_clearing_the_injection(client, db):
    client.inject("db-corruption")

    assert query(db, "SELECT count(*) FROM repo_quotas WHERE daily_budget_usd < 0")[0][0] >= 1
    health = client.health_db()
    assert (health.status, health.http_status) == ("unhealthy", 503)
    assert "daily_budget_usd < 0" in health.reasons[0]
    pilot = client.generate(PILOT)
    assert (pilot.status, pilot.cause) == ("failed", "taskdb-integrity")
    assert client.signals()["db_integrity_ok"] is False

    rollback_to_pilot(db)

    assert client.health_db().healthy
    assert client.generate(PILOT).completed
    assert client.signals()["db_integrity_ok"] is True
    assert [i.name for i in client.incidents()] == ["db-corruption"]


def test_db_corruption_needs_the_phase_6_schema(client, db):
    rollback_to_pilot(db)
    with pytest.raises(FlowEngineRequestError) as caught:
        client.inject("db-corruption")
    assert caught.value.status == 409
    assert "repo_quotas" in str(caught.value)


def test_a_credential_leak_stays_after_the_rollback_until_cleared(client, allowlist):
    client.inject("security-breach")

    assert client.signals()["credentials_leaked"] is True
    assert any("CRITICAL credential leak detected" in line for line in client.logs().errors())
    assert client.health().status == "degraded"
    allowlist.restrict_to_pilot()
    assert client.signals()["credentials_leaked"] is True, "rotation is a manual follow-up"

    client.clear_incidents()

    assert client.signals()["credentials_leaked"] is False


def test_cost_runaway_backdates_daily_spend_and_its_rate_falls_with_scope(client, allowlist):
    client.inject("cost-runaway")

    [spend] = client.metric_samples("flowengine_daily_spend_usd")
    assert spend.value >= 250
    [rate] = client.metric_samples("flowengine_spend_rate_usd_per_hour")
    assert rate.value >= 10 * 40

    allowlist.restrict_to_pilot()

    [rate_after] = client.metric_samples("flowengine_spend_rate_usd_per_hour")
    assert rate_after.value < 2
    [active] = client.metric_samples("flowengine_active_repos")
    assert active.value == 1


def test_quality_degradation_fails_the_mutation_gate_and_leaves_with_scope(client, allowlist):
    client.inject("quality-degradation")

    rates = {s.label("repo"): s.value for s in client.metric_samples("flow_mutation_kill_rate")}
    assert rates[PILOT] == 0.85
    assert all(rates[repo] == 0.55 for repo in PHASE_6)
    flow = client.generate("customer-analytics")
    assert (flow.status, flow.gates_passed) == ("completed", 4)
    assert not client.verify(flow.flow_id, strict=True).passed
    assert client.verify(flow.flow_id, strict=False).passed

    allowlist.restrict_to_pilot()

    assert [(r["repo"], r["kill_rate"]) for r in client.signals()["repos"]] == [(PILOT, 0.85)]
    assert decision(client).priority == "NONE"


def test_slo_violation_is_backdated_and_p95_falls_with_scope(client, allowlist):
    client.inject("slo-violation")

    signals = client.signals()
    assert signals["p95_latency_s"] > 180
    assert signals["p95_above_150s_for_s"] >= 7800
    [above] = client.metric_samples("flowengine_p95_above_threshold_seconds")
    assert above.value >= 7800
    slow = client.generate("ledger-sync")
    assert slow.duration_s >= 180

    allowlist.restrict_to_pilot()
    assert client.generate(PILOT).completed

    signals = client.signals()
    assert signals["p95_latency_s"] < 120
    assert signals["p95_above_150s_for_s"] == 0


def test_model_outage_rate_limits_all_providers_until_only_the_pilot_is_served(client, allowlist):
    client.inject("model-outage")

    assert [client.health_model(p).status for p in MODEL_PROVIDERS] == ["rate-limited"] * 3
    assert client.generate(PILOT).completed, "the pilot is unaffected"

    allowlist.restrict_to_pilot()

    assert [client.health_model(p).status for p in MODEL_PROVIDERS] == ["healthy"] * 3
    assert client.signals()["providers_rate_limited"] == 0


def test_intermittent_errors_show_a_three_percent_failure_ratio(client):
    client.inject("intermittent-errors")

    repos = client.signals()["repos"]
    failures = sum(r["failures_last_hour"] for r in repos)
    flows = sum(r["flows_last_hour"] for r in repos)
    assert failures / flows == pytest.approx(0.03)
    assert decision(client).criteria_met == ("nogo-intermittent",)


def test_user_error_reports_the_config_validation_error(client):
    client.inject("user-error", {"repos": ["risk-engine"]})

    assert client.signals()["config_validation_errors"] == [
        "risk-engine: unknown block_type 'attestaton' in test-basel-i.json"
    ]


def test_flaky_flows_fail_the_given_fraction_of_flows(client):
    client.inject("flaky-flows", {"failure_rate": 1.0})
    flow = client.generate(PILOT)
    assert (flow.status, flow.cause) == ("failed", "flaky-flow")

    client.clear_incidents()
    assert client.generate(PILOT).completed


def test_delete_clears_every_injection_and_the_flows_they_backdated(client, db):
    for name in ("mass-failure", "security-breach", "model-outage", "slo-violation"):
        client.inject(name)
    assert decision(client).priority == "P1"

    cleared = client.clear_incidents()

    assert set(cleared) == {"mass-failure", "security-breach", "model-outage", "slo-violation"}
    assert client.incidents() == ()
    assert decision(client).priority == "NONE"
    assert query(db, "SELECT count(*) FROM flows") == [(0,)]


# --- the admin and error surface -----------------------------------------------------------------


def test_an_unknown_incident_is_refused_with_the_valid_names(client):
    with pytest.raises(FlowEngineRequestError) as caught:
        client.inject("meteor-strike")
    assert caught.value.status == 400
    assert isinstance(caught.value, InputError)
    for name in INCIDENT_NAMES:
        assert name in str(caught.value)


def test_an_injected_incident_cannot_be_injected_twice(client):
    client.inject("security-breach")
    with pytest.raises(FlowEngineRequestError) as caught:
        client.inject("security-breach")
    assert caught.value.status == 409


def test_injection_is_refused_unless_the_simulator_accepts_it(db, allowlist):
    with (
        make_simulator(db, allowlist, accept_injection=False) as simulator,
        pytest.raises(FlowEngineRequestError) as caught,
    ):
        FlowEngineClient(simulator.url).inject("mass-failure")
    assert caught.value.status == 403


def test_unknown_paths_and_providers_answer_404_json(client, sim):
    with pytest.raises(FlowEngineRequestError) as caught:
        client.health_model("mistral")
    assert caught.value.status == 404
    assert "anthropic" in caught.value.body["error"]
    with pytest.raises(FlowEngineRequestError) as caught:
        client._json("GET", "/api/v2/nothing")
    assert caught.value.status == 404
    assert caught.value.body == {"error": "no such endpoint: GET /api/v2/nothing"}


def test_logs_are_rfc3339_level_message_lines_and_tail_limits_them(client):
    client.inject("security-breach")
    client.generate(PILOT)

    lines = client.logs(tail=3).lines

    assert len(lines) == 3
    assert all(LOG_LINE_RE.match(line) for line in lines), lines
    assert client.logs(tail=100).errors()


def test_the_client_reports_a_dead_flowengine_as_retryable_with_its_url():
    port = free_port()
    client = FlowEngineClient(f"http://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(FlowEngineUnavailable) as caught:
        client.health()
    assert f"127.0.0.1:{port}/health" in str(caught.value)
    assert caught.value.status is None


def test_injections_survive_a_restart_through_the_state_file(db, allowlist, tmp_path):
    state = tmp_path / "flowengine-state.json"
    with make_simulator(db, allowlist, state_file=state) as first:
        FlowEngineClient(first.url).inject("security-breach")
    assert state.stat().st_mode & 0o777 == 0o600
    with make_simulator(db, allowlist, state_file=state) as second:
        client = FlowEngineClient(second.url)
        assert [i.name for i in client.incidents()] == ["security-breach"]
        assert client.signals()["credentials_leaked"] is True


# --- python -m rollback_drill.flowengine ---------------------------------------------------------


def _ready_line(proc: subprocess.Popen[str]) -> dict | None:
    if proc.poll() is not None:
        raise AssertionError(f"the simulator exited with {proc.returncode}: {proc.stderr.read()}")
    readable, _, _ = select.select([proc.stdout], [], [], 0)
    return json.loads(proc.stdout.readline()) if readable else None


def test_the_entry_point_prints_its_url_serves_health_and_stops_on_sigterm(db, tmp_path):
    allowlist_file = tmp_path / "allowlist.json"
    allowlist_file.write_text(json.dumps({"available_pods": 3, "repos": [PILOT, "risk-engine"]}))
    env = {**os.environ, "DRILL_TEST_TASKDB_DSN": db.dsn}
    argv = [sys.executable, "-m", "rollback_drill.flowengine", "--port", "0", "--dsn-env", "DRILL_TEST_TASKDB_DSN",
            "--pilot-repo", PILOT, "--state-file", str(tmp_path / "state.json"),
            "--allowlist-source", f"file:{allowlist_file}", "--seed", "7"]  # fmt: skip
    assert db.password not in " ".join(argv)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = wait_until(lambda: _ready_line(proc), timeout_s=20, describe="the simulator's JSON ready line")
        assert ready["pid"] == proc.pid
        client = FlowEngineClient(ready["url"])
        assert ready["url"].startswith("http://127.0.0.1:")
        assert client.health().status == "healthy"
        assert client.repo_config("risk-engine").enabled
        allowlist_file.write_text(json.dumps({"available_pods": 3, "repos": [PILOT]}))
        assert wait_until(
            lambda: not client.repo_config("risk-engine").enabled,
            timeout_s=5,
            describe="the allowlist file's change to take effect",
        )

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = proc.stdout.read(), proc.stderr.read()
    assert db.password not in out + err
    assert "stopping on signal" in err


def test_the_entry_point_refuses_to_start_without_the_dsn_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_DSN_VAR"}
    proc = subprocess.run(
        [sys.executable, "-m", "rollback_drill.flowengine", "--dsn-env", "NO_SUCH_DSN_VAR"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "export NO_SUCH_DSN_VAR=" in proc.stderr


def test_reported_durations_are_simulated_not_measured(client):
    started = datetime.now().astimezone()
    flow = client.generate(PILOT)
    elapsed = (datetime.now().astimezone() - started).total_seconds()
    assert elapsed < 5 < flow.duration_s
