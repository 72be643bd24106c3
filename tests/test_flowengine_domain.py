"""FlowEngine's rules as the simulator applies them, without HTTP or Postgres: scope, flows, verification,
health, stats and signals, the lines an injection logs, the metrics, and the two route tables."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rollback_drill.errors import InputError
from rollback_drill.flowengine import domain
from rollback_drill.flowengine.api import Reply
from rollback_drill.flowengine.domain import FlowOutcome, RepoFailures, SharedRandom, WindowSummary
from rollback_drill.flowengine.faults import injection_log_lines
from rollback_drill.flowengine.incidents import GATES, MODEL_PROVIDERS, NORMAL_COST_USD, NORMAL_DURATION_S
from rollback_drill.flowengine.injection import Injection
from rollback_drill.flowengine.injection_state import FlowEffect
from rollback_drill.flowengine.log import ServiceLog, first_line, rfc3339
from rollback_drill.flowengine.metrics import FlowMetrics
from rollback_drill.flowengine.scope import (
    NOT_ALLOWLISTED_REASON,
    RESTRICTED_REASON,
    AllowlistView,
    Scope,
    ServiceHistory,
    refusal_reason,
    scope_of,
    unavailable_reason,
)
from rollback_drill.flowengine.server import (
    CONTRACT_ROUTES,
    PRIVATE_ROUTES,
    BadRequest,
    Call,
    listen_host,
    query_flag,
    query_number,
    route,
    routes,
)
from rollback_drill.timing.clock import FakeClock

PILOT = "compliance-service"
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HEALTHY = FlowEffect(None, NORMAL_DURATION_S, NORMAL_COST_USD, 0.85)


# --- scope ---------------------------------------------------------------------------------------


def test_the_pods_allowlist_is_served_only_while_a_pod_is_available():
    up = scope_of(AllowlistView(2, frozenset({PILOT, "risk-engine"})))
    down = scope_of(AllowlistView(0, frozenset({PILOT, "risk-engine"})))
    assert up.available
    assert up.served == {PILOT, "risk-engine"}
    assert not down.available
    assert down.served == frozenset()
    assert down.listed == {PILOT, "risk-engine"}  # an injection still aims at what the pods list


def test_a_failed_allowlist_source_is_unavailable_with_its_reason():
    failed = Scope(None, frozenset(), "allowlist source failed: watch lost")
    assert not failed.available
    assert failed.listed == frozenset()
    assert unavailable_reason(failed) == "allowlist source failed: watch lost"
    assert unavailable_reason(scope_of(AllowlistView(0, frozenset()))) == "no flowengine pod is available (0 Ready)"


def test_a_refused_expanded_repo_is_restricted_and_a_refused_pilot_is_not_allowlisted():
    assert refusal_reason("risk-engine", pilot=PILOT) == RESTRICTED_REASON
    assert refusal_reason(PILOT, pilot=PILOT) == NOT_ALLOWLISTED_REASON


def test_a_repo_served_again_starts_its_signal_hour_anew():
    history = ServiceHistory()
    both = scope_of(AllowlistView(3, frozenset({PILOT, "risk-engine"})))
    pilot_only = scope_of(AllowlistView(3, frozenset({PILOT})))
    history.observe(both, now_mono=0.0, now_wall=T0)
    hour_ago = T0 + timedelta(minutes=30) - timedelta(hours=1)
    # Served when first looked at: no start of its own, the whole hour counts.
    assert history.signal_windows([PILOT, "risk-engine"], hour_ago=hour_ago) == [hour_ago, hour_ago]
    history.observe(pilot_only, now_mono=60.0, now_wall=T0 + timedelta(minutes=1))
    history.observe(both, now_mono=600.0, now_wall=T0 + timedelta(minutes=10))
    assert history.signal_windows([PILOT, "risk-engine"], hour_ago=hour_ago) == [hour_ago, T0 + timedelta(minutes=10)]
    history.count_from_before({"risk-engine"})
    assert history.signal_windows(["risk-engine"], hour_ago=hour_ago) == [hour_ago]


def test_unavailable_time_counts_from_the_first_observation_without_pods():
    history = ServiceHistory()
    history.observe(scope_of(AllowlistView(3, frozenset({PILOT}))), now_mono=10.0, now_wall=T0)
    assert history.unavailable_for_s(20.0) == 0.0
    history.observe(scope_of(AllowlistView(0, frozenset({PILOT}))), now_mono=30.0, now_wall=T0)
    history.observe(scope_of(AllowlistView(0, frozenset({PILOT}))), now_mono=40.0, now_wall=T0)
    assert history.unavailable_for_s(50.0) == 20.0
    history.observe(Scope(None, frozenset(), "source failed"), now_mono=55.0, now_wall=T0)  # cannot tell: no change
    assert history.unavailable_for_s(60.0) == 30.0
    history.observe(scope_of(AllowlistView(1, frozenset({PILOT}))), now_mono=70.0, now_wall=T0)
    assert history.unavailable_for_s(80.0) == 0.0


def test_p95_above_the_threshold_is_timed_and_forgotten_when_it_falls():
    history = ServiceHistory()
    assert history.p95_above_for_s(120.0, 100.0) == 0.0
    assert history.p95_above_for_s(190.0, 100.0) == 0.0
    assert history.p95_above_for_s(190.0, 160.0) == 60.0
    assert history.p95_above_for_s(150.0, 170.0) == 0.0  # at the threshold is not above it
    history.p95_above_since(100.0 - 7800.0)
    assert history.p95_above_for_s(190.0, 100.0) == 7800.0


# --- flows ---------------------------------------------------------------------------------------


def draws(*values: float):
    """A draw that returns ``values`` in turn and records the ranges it was asked for."""
    asked: list[tuple[float, float]] = []
    queue = list(values)

    def draw(low: float, high: float) -> float:
        asked.append((low, high))
        return queue.pop(0)

    return draw, asked


def test_a_healthy_flow_draws_its_duration_then_its_cost_and_passes_every_gate():
    draw, asked = draws(61.234, 1.234567)
    outcome = domain.flow_outcome(HEALTHY, integrity_failed=False, draw=draw)
    assert asked == [NORMAL_DURATION_S, NORMAL_COST_USD]
    assert outcome == FlowOutcome(None, 61.2, 1.2346, tuple((gate, True) for gate in GATES))
    assert (outcome.status, outcome.gates_passed) == ("completed", 5)
    assert outcome.task_rows() == [(gate, "passed") for gate in GATES]


def test_a_failed_integrity_check_fails_the_flow_before_any_injected_cause():
    effect = FlowEffect("model-timeout", NORMAL_DURATION_S, NORMAL_COST_USD, 0.85)
    draw, asked = draws(12.34)
    outcome = domain.flow_outcome(effect, integrity_failed=True, draw=draw)
    assert asked == [domain.FAILED_DURATION_S]  # a failed flow costs nothing: one draw only
    assert (outcome.cause, outcome.status, outcome.duration_s, outcome.cost_usd) == (
        "taskdb-integrity", "failed", 12.3, 0.0,
    )  # fmt: skip
    assert outcome.gates_passed == 0
    assert outcome.task_rows() == [(gate, "skipped") for gate in GATES]
    injected = domain.flow_outcome(effect, integrity_failed=False, draw=draws(6.0)[0])
    assert injected.cause == "model-timeout"


def test_a_kill_rate_under_60_percent_fails_the_mutation_gate_only():
    degraded = FlowEffect(None, NORMAL_DURATION_S, NORMAL_COST_USD, 0.55)
    outcome = domain.flow_outcome(degraded, integrity_failed=False, draw=draws(50.0, 1.0)[0])
    assert outcome.status == "completed"
    assert dict(outcome.gates) == {gate: gate != "mutation" for gate in GATES}
    assert ("mutation", "failed") in outcome.task_rows()
    assert outcome.gates_passed == 4


def test_the_provider_is_picked_evenly_from_a_draw():
    assert [domain.pick_provider(x) for x in (0.0, 0.34, 0.67, 0.999)] == [*MODEL_PROVIDERS, MODEL_PROVIDERS[-1]]


def test_a_flow_request_names_repo_family_and_block_type_as_strings():
    assert domain.missing_flow_fields({"repo": PILOT, "family": "compliance", "block_type": "attestation"}) == []
    assert domain.missing_flow_fields({"repo": "", "family": 3}) == ["repo", "family", "block_type"]


def test_the_flow_answer_carries_gates_for_a_completed_flow_and_the_cause_for_a_failed_one():
    completed = FlowOutcome(None, 61.2, 1.2, tuple((gate, True) for gate in GATES))
    answer = domain.flow_answer(completed, flow_id=7, repo=PILOT, provider=None)
    assert answer["status"] == "completed"
    assert answer["gates_passed"] == 5
    assert answer["provider"] is None
    assert answer["quality_gates"] == [{"name": gate, "passed": True} for gate in GATES]
    failed = FlowOutcome("model-timeout", 9.0, 0.0, tuple((gate, False) for gate in GATES))
    assert domain.flow_answer(failed, flow_id=8, repo="risk-engine", provider="openai") == {
        "status": "failed", "cause": "model-timeout", "flow_id": 8, "repo": "risk-engine", "duration_s": 9.0,
    }  # fmt: skip


def test_strict_verification_needs_five_gates_lenient_four_and_a_failed_flow_never_passes():
    four = {gate: ("failed" if gate == "mutation" else "passed") for gate in GATES}
    five = dict.fromkeys(GATES, "passed")

    def passed(task_status: dict[str, str], *, strict: bool, status: str = "completed") -> object:
        return domain.verification(1, repo=PILOT, status=status, task_status=task_status, strict=strict)["passed"]

    assert passed(five, strict=True)
    assert passed(four, strict=False)
    assert not passed(four, strict=True)
    assert not passed(five, strict=False, status="failed")
    doc = domain.verification(1, repo=PILOT, status="completed", task_status=four, strict=True)
    assert doc["gates_passed"] == 4
    assert doc["gates"][3] == {"name": "mutation", "passed": False}


# --- health, stats and signals -----------------------------------------------------------------------


def test_health_is_degraded_by_each_reason_in_turn():
    assert (
        domain.health_reasons(crash_loop_s=None, taskdb_problem=None, credentials_leaked=False, rate_limited=()) == []
    )
    assert domain.health_reasons(crash_loop_s=0.0, taskdb_problem=None, credentials_leaked=False, rate_limited=()) == []
    assert domain.health_reasons(
        crash_loop_s=960.4, taskdb_problem="1 bad row", credentials_leaked=True, rate_limited=MODEL_PROVIDERS
    ) == [
        "flowengine crash loop: Deployment unavailable for 960 s",
        "TaskDB: 1 bad row",
        "credential leak detected",
        "model providers rate-limiting: anthropic, openai, google",
    ]


def test_stats_summarise_the_window_overall_and_per_repo():
    rows = [
        WindowSummary(None, 4, 1, 60.0, 80.5),
        WindowSummary("risk-engine", 3, 1, 50, 70),
        WindowSummary(PILOT, 1, 0, None, None),
    ]
    doc = domain.stats_document(rows, window_s=600, since="2026-12-06T11:50:00.000Z")
    assert (doc["flows"], doc["failed"], doc["success_rate"], doc["p95_s"]) == (4, 1, 0.75, 80.5)
    assert doc["active_repos"] == [PILOT, "risk-engine"]
    assert doc["repos"]["risk-engine"] == {"flows": 3, "failed": 1, "success_rate": 2 / 3, "p50_s": 50.0, "p95_s": 70.0}
    empty = domain.stats_document([], window_s=600, since="x")
    assert (empty["flows"], empty["success_rate"], empty["active_repos"]) == (0, None, [])


def test_signals_list_every_served_repo_and_take_p95_from_the_overall_row():
    rows = [RepoFailures("risk-engine", 9, 8, "model-timeout", None), RepoFailures(None, 10, 8, None, 190.0)]
    repos, p95 = domain.repo_signals([PILOT, "risk-engine"], rows, lambda repo: 0.55 if repo == "risk-engine" else 0.85)
    assert p95 == 190.0
    assert repos == [
        {"repo": PILOT, "failures_last_hour": 0, "flows_last_hour": 0, "cause": None, "kill_rate": 0.85},
        {
            "repo": "risk-engine",
            "failures_last_hour": 8,
            "flows_last_hour": 9,
            "cause": "model-timeout",
            "kill_rate": 0.55,
        },
    ]
    assert domain.repo_signals([], [], lambda _: 0.85) == ([], 0.0)


def test_shared_random_is_the_seeded_generator():
    ours, theirs = SharedRandom(random.Random(7)), random.Random(7)  # noqa: S311 - simulated durations
    assert [ours.uniform(5, 30), ours.random()] == [theirs.uniform(5, 30), theirs.random()]
    with ours.held() as rng:
        assert rng.random() == theirs.random()


# --- what an injection logs ---------------------------------------------------------------------------


def injection(name: str, repos: tuple[str, ...] = (), **params: object) -> Injection:
    return Injection(name, dict(params), repos, T0, 0.0)


def test_an_injection_logs_a_warning_naming_it_then_the_lines_the_runbook_greps():
    failing = injection("mass-failure", ("risk-engine", "ledger-sync"))
    failing.backdated_flow_ids = [1, 2]
    lines = injection_log_lines(failing, ())
    assert lines[0][0] == "WARNING"
    assert lines[0][1].startswith("incident injected: mass-failure (")
    assert lines[1:] == [
        ("ERROR", "flows failing: repo=risk-engine incident=mass-failure cause=model-timeout"),
        ("ERROR", "flows failing: repo=ledger-sync incident=mass-failure cause=model-timeout"),
    ]
    quality = injection_log_lines(injection("quality-degradation", ("a", "b")), ())
    assert quality[1] == ("ERROR", "mutation kill-rate below 60 % on 2 repo(s): a, b")
    breach = injection_log_lines(injection("security-breach", credential="openai key"), ())
    assert breach[-1] == ("CRITICAL", "credential leak detected: openai key exposed in flow output; rotate it")
    user = injection_log_lines(injection("user-error", (PILOT,)), ("bad config",))
    assert user[-1] == ("ERROR", "config validation failed: bad config")
    assert len(injection_log_lines(injection("model-outage"), ())) == 1 + len(MODEL_PROVIDERS)


# --- log and metrics ----------------------------------------------------------------------------------


def test_the_log_keeps_timestamped_redacted_lines_and_copies_them_to_its_sink():
    clock = FakeClock(start_wall=T0)
    copied: list[str] = []
    log = ServiceLog(clock, copied.append)
    log.write("INFO", "one")
    clock.advance(1.5)
    log.write("ERROR", "two")
    assert log.tail(1) == ["2026-12-06T12:00:01.500Z ERROR two"]
    assert log.tail(10) == copied
    assert len(copied) == 2
    assert log.tail(0) == []
    assert rfc3339(T0) == "2026-12-06T12:00:00.000Z"
    assert first_line(ValueError("first\nsecond")) == "first"
    assert first_line(ValueError()) == "ValueError"


def samples(metrics: FlowMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = metrics.exposition().decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_metrics_count_flows_failures_by_cause_and_completed_durations():
    metrics = FlowMetrics()
    metrics.flow("risk-engine", "failed", "model-timeout", 12.0)
    metrics.flow(PILOT, "completed", None, 61.0)
    metrics.flow(PILOT, "completed")  # counted from another pod's backdated history: no duration to observe
    assert samples(metrics, "flow_failures_total") == {(("cause", "model-timeout"), ("repo", "risk-engine")): 1.0}
    assert samples(metrics, "flows_total")[(("repo", PILOT), ("status", "completed"))] == 2.0
    assert samples(metrics, "flow_duration_seconds_count") == {(): 1.0}


def test_metrics_gauges_follow_the_signals():
    metrics = FlowMetrics()
    signals = {
        "daily_spend_usd": 250.0, "spend_rate_usd_per_hour": 41.5, "p95_latency_s": 190.0,
        "p95_above_150s_for_s": 7800.0, "crash_loop_unavailable_s": 0.0, "db_integrity_ok": False,
        "credentials_leaked": True, "providers_rate_limited": 3, "available_pods": None,
        "served_repos": [PILOT, "risk-engine"],
    }  # fmt: skip
    metrics.set_from_signals(signals, lambda repo: 0.55 if repo == "risk-engine" else 0.85)
    assert samples(metrics, "flowengine_daily_spend_usd") == {(): 250.0}
    assert samples(metrics, "flowengine_taskdb_integrity_ok") == {(): 0.0}
    assert samples(metrics, "flowengine_available_pods") == {(): 0.0}
    assert samples(metrics, "flowengine_active_repos") == {(): 2.0}
    assert samples(metrics, "flow_mutation_kill_rate") == {(("repo", PILOT),): 0.85, (("repo", "risk-engine"),): 0.55}
    metrics.set_from_signals({**signals, "served_repos": [PILOT]}, lambda _: 0.85)
    assert samples(metrics, "flow_mutation_kill_rate") == {(("repo", PILOT),): 0.85}  # a refused repo has no rate


# --- routing ------------------------------------------------------------------------------------------


class Endpoints:
    """Stands in for ``FlowEngineAPI``: answers with the name of the endpoint called."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: Reply(HTTPStatus.OK, {"endpoint": name, "args": [*args, *kwargs.values()]})


def answer(method: str, path: str, *, contract_only: bool = False, query: dict[str, list[str]] | None = None) -> Reply:
    return route(
        routes(contract_only=contract_only),
        method,
        path,
        lambda args: Call(Endpoints(), args, query or {}, dict),  # type: ignore[arg-type]
    )


def test_the_contract_and_private_tables_share_no_path():
    contract = {pattern.pattern for _, pattern, _ in CONTRACT_ROUTES}
    private = {pattern.pattern for _, pattern, _ in PRIVATE_ROUTES}
    assert contract.isdisjoint(private)
    assert {"/health", "/health/db", "/metrics", "/api/v1/flows"} <= contract
    assert {"/api/v1/signals", "/api/v1/stats", "/logs", "/admin/incidents"} <= private


def test_requests_are_routed_by_method_and_path_with_unquoted_arguments():
    assert answer("GET", "/health/models/openai").body == {"endpoint": "health_model", "args": ["openai"]}
    assert answer("GET", "/api/v1/repos/risk%2Dengine/config").body == {
        "endpoint": "repo_config",
        "args": ["risk-engine"],
    }
    verify = answer("POST", "/api/v1/flows/12/verify", query={"strict": ["true"]})
    assert verify.body == {"endpoint": "verify", "args": [12, True]}
    assert answer("DELETE", "/admin/incidents/crash-loop").body == {
        "endpoint": "clear_incidents",
        "args": ["crash-loop"],
    }


def test_an_unknown_path_is_404_and_a_known_path_with_another_method_is_405():
    assert answer("GET", "/nope").status == HTTPStatus.NOT_FOUND
    wrong = answer("PUT", "/admin/incidents")
    assert wrong.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert wrong.body == {"error": "PUT /admin/incidents: allowed DELETE, GET, POST"}


def test_contract_only_routing_answers_private_paths_404_and_contract_paths_as_before():
    assert answer("GET", "/api/v1/signals", contract_only=True).status == HTTPStatus.NOT_FOUND
    assert answer("POST", "/admin/incidents", contract_only=True).status == HTTPStatus.NOT_FOUND
    assert answer("GET", "/health", contract_only=True).body == {"endpoint": "health", "args": []}


def test_query_parameters_are_checked():
    assert query_number({}, "tail", 100, low=0, high=10) == 100
    assert query_number({"tail": ["1", "7"]}, "tail", 100, low=0, high=10) == 7.0
    with pytest.raises(BadRequest, match="must be a number"):
        query_number({"tail": ["x"]}, "tail", 100, low=0, high=10)
    with pytest.raises(BadRequest, match="between 0 and 10"):
        query_number({"tail": ["11"]}, "tail", 100, low=0, high=10)
    assert query_flag({"strict": ["YES"]}, "strict")
    assert not query_flag({}, "strict")


def test_the_simulator_listens_on_loopback_unless_in_a_pod():
    assert listen_host("127.0.0.1", in_pod=False) == "127.0.0.1"
    assert listen_host("127.0.0.1", in_pod=True) == "0.0.0.0"  # noqa: S104 - what the pod's namespace binds
    with pytest.raises(InputError, match="loopback only"):
        listen_host("10.0.0.1", in_pod=False)
