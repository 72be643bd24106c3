"""The runbook's decision framework: every edge on both sides, precedence, and the incident table."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rollback_drill.errors import InputError
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.runbook.decision import (
    CRITERIA,
    P2_TRIAGE_S,
    Decision,
    RepoSignal,
    Signals,
    decide,
    decide_live,
    to_decision_signals,
)

PILOT = "compliance-service"
PHASE_6_REPOS = tuple(f"repo-{i:02d}" for i in range(1, 11))
PHASE_7_REPOS = tuple(f"repo-{i:02d}" for i in range(1, 51))


def healthy(name: str, **changes: object) -> RepoSignal:
    fields: dict[str, object] = {"flows_last_hour": 100, "kill_rate": 0.8} | changes
    return RepoSignal(name, **fields)  # type: ignore[arg-type]


def failing(name: str, cause: str | None = "model-timeout", failures: int = 20) -> RepoSignal:
    return healthy(name, failures_last_hour=failures, cause=cause)


def world(*repos: RepoSignal, expanded: tuple[str, ...] = PHASE_6_REPOS, **signals: object) -> Signals:
    """The pilot plus the expanded repos, all healthy unless replaced by ``repos``."""
    by_name = {r.repo: r for r in repos}
    names = (PILOT, *expanded)
    extra = [r for name, r in by_name.items() if name not in names]
    active = tuple(by_name.get(name, healthy(name)) for name in names) + tuple(extra)
    return Signals(repos=active, **signals)  # type: ignore[arg-type]


def failing_count(n: int, *, cause: str | None = None, expanded: tuple[str, ...] = PHASE_7_REPOS) -> Signals:
    """``n`` expanded repos failing, each with its own cause unless one is given (no cascade by accident)."""
    repos = [failing(name, cause or f"cause-{i}") for i, name in enumerate(expanded[:n])]
    return world(*repos, expanded=expanded)


# --- the outcome when nothing is wrong -----------------------------------------------------------


def test_a_healthy_world_meets_no_criterion():
    decision = decide(world())
    assert decision == Decision("NONE", "do not roll back", (), ("no rollback criterion met",), 0.0)
    assert not decision.rolls_back


def test_no_repos_at_all_meets_no_criterion():
    assert decide(Signals()).priority == "NONE"


# --- P1 edges --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unavailable_s", "p1"),
    [(0.0, False), (899.9, False), (900.0, False), (900.01, True), (901.0, True), (3600.0, True)],
)
def test_crash_loop_is_p1_only_beyond_15_minutes(unavailable_s, p1):
    decision = decide(world(crash_loop_unavailable_s=unavailable_s))
    assert ("p1-crash-loop" in decision.criteria_met) is p1
    assert (decision.priority == "P1") is p1


def test_db_integrity_compromised_is_p1():
    decision = decide(world(db_integrity_ok=False))
    assert decision.priority == "P1"
    assert decision.criteria_met == ("p1-db-corruption",)


def test_leaked_credentials_are_p1():
    decision = decide(world(credentials_leaked=True))
    assert decision.priority == "P1"
    assert decision.criteria_met == ("p1-security-breach",)


@pytest.mark.parametrize(
    ("spend_usd", "p1"),
    [(0.0, False), (199.99, False), (200, False), (200.0, False), (200.01, True), (800.0, True)],
)
def test_cost_runaway_is_p1_only_above_200_dollars(spend_usd, p1):
    decision = decide(world(daily_spend_usd=spend_usd))
    assert ("p1-cost-runaway" in decision.criteria_met) is p1


def test_cost_runaway_reason_carries_the_spend():
    assert decide(world(daily_spend_usd=250.5)).reasons == ("daily spend $250.50 (> $200.00)",)


@pytest.mark.parametrize(("failing_repos", "p1"), [(9, False), (10, False), (11, True), (50, True)])
def test_mass_concurrent_failures_need_more_than_10_failing_repos(failing_repos, p1):
    decision = decide(failing_count(failing_repos))
    assert ("p1-mass-concurrent-failures" in decision.criteria_met) is p1
    assert (decision.priority == "P1") is p1


def test_mass_failure_reason_names_the_count():
    decision = decide(failing_count(11))
    assert decision.reasons == ("11 repos failing simultaneously (> 10)",)


@pytest.mark.parametrize(("failures_last_hour", "is_failing"), [(0, False), (5, False), (6, True)])
def test_a_repo_is_failing_with_more_than_5_failures_an_hour(failures_last_hour, is_failing):
    assert RepoSignal("r", failures_last_hour=failures_last_hour).failing is is_failing


def test_repos_with_5_failures_each_do_not_count_towards_mass_failure():
    repos = [healthy(name, failures_last_hour=5, cause=f"c{i}") for i, name in enumerate(PHASE_7_REPOS)]
    assert "p1-mass-concurrent-failures" not in decide(world(*repos, expanded=PHASE_7_REPOS)).criteria_met


# --- P2 edges --------------------------------------------------------------------------------------


def kill_rates(low: int, total: int, *, low_rate: float = 0.59, high_rate: float = 0.8) -> Signals:
    """``total`` repos with a known kill-rate, ``low`` of them at ``low_rate``; others unknown."""
    names = tuple(f"repo-{i:03d}" for i in range(total))
    repos = [
        RepoSignal(name, flows_last_hour=100, kill_rate=low_rate if i < low else high_rate)
        for i, name in enumerate(names)
    ]
    repos += [RepoSignal(f"unknown-{i}", flows_last_hour=100) for i in range(total)]
    return Signals(repos=tuple(repos))


@pytest.mark.parametrize(
    ("low", "total", "low_rate", "p2"),
    [
        (50, 100, 0.59, True),  # 59 % on exactly 50 %
        (49, 100, 0.59, False),  # 59 % on 49 %
        (51, 100, 0.59, True),
        (1, 2, 0.59, True),
        (50, 100, 0.60, False),  # exactly 60 % is not below 60 %
        (100, 100, 0.60, False),
        (100, 100, 0.5999, True),
        (100, 100, 0.0, True),
    ],
)
def test_quality_degradation_edges(low, total, low_rate, p2):
    decision = decide(kill_rates(low, total, low_rate=low_rate))
    assert ("p2-quality-degradation" in decision.criteria_met) is p2
    assert (decision.priority == "P2") is p2


def test_quality_degradation_counts_only_repos_with_a_known_kill_rate():
    # 1 of 2 known repos is low; the 2 unknown ones do not dilute it to 25 %.
    assert decide(kill_rates(1, 2)).criteria_met == ("p2-quality-degradation",)


def test_quality_degradation_with_no_known_kill_rate_is_not_met():
    repos = tuple(RepoSignal(f"r{i}", flows_last_hour=100) for i in range(5))
    assert decide(Signals(repos=repos)).priority == "NONE"


def test_quality_degradation_reason_carries_the_share():
    (reason,) = decide(kill_rates(3, 5)).reasons
    assert reason == "mutation kill-rate below 60% on 3 of 5 repos with a known kill-rate (60 % >= 50 %)"


@pytest.mark.parametrize(
    ("p95_s", "above_for_s", "p2"),
    [
        (151.0, 7201.0, True),
        (150.0, 7201.0, False),  # exactly 150 s is not above 150 s
        (150.01, 7201.0, True),
        (151.0, 7200.0, False),  # exactly 2 h is not more than 2 h
        (151.0, 7199.0, False),
        (151.0, 7200.01, True),
        (300.0, 0.0, False),
    ],
)
def test_slo_violation_edges(p95_s, above_for_s, p2):
    decision = decide(world(p95_latency_s=p95_s, p95_above_150s_for_s=above_for_s))
    assert ("p2-slo-violation" in decision.criteria_met) is p2


@pytest.mark.parametrize(("rate_limited", "p2"), [(0, False), (1, False), (2, False), (3, True)])
def test_model_quota_exhaustion_needs_all_3_providers(rate_limited, p2):
    decision = decide(world(providers_rate_limited=rate_limited))
    assert ("p2-model-quota-exhaustion" in decision.criteria_met) is p2


@pytest.mark.parametrize(("same_cause", "p2"), [(2, False), (3, True), (4, True), (10, True)])
def test_cascading_failures_need_3_repos_with_one_cause(same_cause, p2):
    repos = [failing(name, "db-pool-exhausted") for name in PHASE_6_REPOS[:same_cause]]
    decision = decide(world(*repos))
    assert ("p2-cascading-failures" in decision.criteria_met) is p2


def test_three_failing_repos_with_different_causes_are_not_cascading():
    repos = [failing(name, cause) for name, cause in zip(PHASE_6_REPOS, ["a", "b", "c"], strict=False)]
    assert "p2-cascading-failures" not in decide(world(*repos)).criteria_met


def test_repos_without_a_known_cause_do_not_cascade():
    repos = [failing(name, None) for name in PHASE_6_REPOS[:5]]
    assert "p2-cascading-failures" not in decide(world(*repos)).criteria_met


def test_repos_below_the_failing_threshold_do_not_cascade():
    repos = [healthy(name, failures_last_hour=5, cause="model-timeout") for name in PHASE_6_REPOS[:5]]
    assert "p2-cascading-failures" not in decide(world(*repos)).criteria_met


def test_cascading_reason_names_the_cause_and_the_repos():
    repos = [failing(name, "model-timeout") for name in PHASE_6_REPOS[:3]]
    (reason,) = decide(world(*repos)).reasons
    assert reason == "3 repos failing with the same root cause 'model-timeout' (>= 3): repo-01, repo-02, repo-03"


def test_cascading_reason_lists_every_cause_group_but_abbreviates_long_lists():
    repos = [failing(name, "model-timeout") for name in PHASE_6_REPOS[:7]]
    repos += [failing(name, "db-pool") for name in PHASE_6_REPOS[7:]]
    decision = decide(world(*repos))
    assert decision.criteria_met == ("p2-cascading-failures",)
    (reason,) = decision.reasons
    assert "3 repos failing with the same root cause 'db-pool'" in reason
    assert "7 repos failing with the same root cause 'model-timeout'" in reason
    assert "and 2 more" in reason


def test_p2_asks_for_the_30_minute_triage():
    decision = decide(world(providers_rate_limited=3))
    assert decision.priority == "P2"
    assert decision.action == "triage then roll back"
    assert decision.triage_s == P2_TRIAGE_S == 1800.0
    assert decision.rolls_back


# --- NO-GO edges -------------------------------------------------------------------------------


def test_exactly_one_failing_repo_is_isolated_not_rolled_back():
    decision = decide(world(failing("repo-03", failures=60)))
    assert decision.priority == "NO-GO"
    assert decision.action == "isolate repo"
    assert decision.criteria_met == ("nogo-single-repo",)
    assert "repo-03" in decision.reasons[0]
    assert "RB-CORE-001" in decision.reasons[0]
    assert not decision.rolls_back
    assert decision.triage_s == 0.0


def test_two_failing_repos_with_different_causes_are_neither_single_nor_cascading():
    decision = decide(world(failing("repo-01", "a", failures=60), failing("repo-02", "b", failures=60)))
    assert decision.priority == "NONE"


def intermittent(failures: int, flows: int) -> Signals:
    return Signals(repos=(RepoSignal("a", failures_last_hour=failures, flows_last_hour=flows),))


@pytest.mark.parametrize(
    ("failures", "flows", "is_intermittent"),
    [
        (49, 1000, True),  # 4.9 %
        (50, 1000, False),  # exactly 5.0 %
        (51, 1000, False),
        (1, 1000, True),
        (0, 1000, False),  # no failures: nothing intermittent about it
        (3, 0, False),  # flows unknown: no ratio
    ],
)
def test_intermittent_errors_are_below_5_percent_and_above_zero(failures, flows, is_intermittent):
    decision = decide(intermittent(failures, flows))
    assert ("nogo-intermittent" in decision.criteria_met) is is_intermittent


def test_intermittent_ratio_is_over_all_repos():
    # 4 failures in one repo's 40 flows is 10 %, but 4 of 400 over all repos is 1 %.
    repos = (
        RepoSignal("a", failures_last_hour=4, flows_last_hour=40),
        *(RepoSignal(f"r{i}", flows_last_hour=40) for i in range(9)),
    )
    decision = decide(Signals(repos=repos))
    assert decision.criteria_met == ("nogo-intermittent",)
    assert decision.action == "do not roll back"
    assert decision.reasons == ("failure ratio 1.00 % (4 of 400 flows in the last hour) below 5 %",)


def test_user_error_is_no_go():
    decision = decide(world(config_validation_errors=("repo-04: unknown block family 'complaince'",)))
    assert decision.priority == "NO-GO"
    assert decision.action == "do not roll back"
    assert decision.criteria_met == ("nogo-user-error",)
    assert "complaince" in decision.reasons[0]


def test_a_single_failing_repo_diluted_below_5_percent_is_also_intermittent_and_still_isolated():
    decision = decide(world(failing("repo-03", failures=10)))  # 10 of 1100 flows
    assert decision.criteria_met == ("nogo-single-repo", "nogo-intermittent")
    assert decision.action == "isolate repo"
    assert len(decision.reasons) == 2


# --- precedence and several criteria ---------------------------------------------------------


def test_p1_wins_over_p2_and_no_go_and_lists_only_p1_criteria():
    signals = world(
        failing("repo-01", "x"),
        crash_loop_unavailable_s=1000.0,
        providers_rate_limited=3,
        config_validation_errors=("bad",),
    )
    decision = decide(signals)
    assert decision.priority == "P1"
    assert decision.action == "roll back"
    assert decision.criteria_met == ("p1-crash-loop",)
    assert decision.triage_s == 0.0
    assert decision.rolls_back


def test_p2_wins_over_no_go():
    decision = decide(world(failing("repo-01"), providers_rate_limited=3, config_validation_errors=("bad",)))
    assert decision.priority == "P2"
    assert decision.criteria_met == ("p2-model-quota-exhaustion",)


def test_all_p1_criteria_are_listed_in_runbook_order():
    signals = failing_count(11)
    signals = Signals(
        repos=signals.repos,
        crash_loop_unavailable_s=901.0,
        db_integrity_ok=False,
        credentials_leaked=True,
        daily_spend_usd=201.0,
    )
    decision = decide(signals)
    assert decision.criteria_met == (
        "p1-crash-loop",
        "p1-db-corruption",
        "p1-security-breach",
        "p1-cost-runaway",
        "p1-mass-concurrent-failures",
    )
    assert len(decision.reasons) == 5


def test_all_p2_criteria_are_listed_in_runbook_order():
    cascade = [healthy(name, failures_last_hour=20, cause="model-timeout", kill_rate=0.4) for name in PHASE_6_REPOS[:3]]
    signals = world(
        *cascade,
        *(healthy(name, kill_rate=0.4) for name in PHASE_6_REPOS[3:]),
        p95_latency_s=200.0,
        p95_above_150s_for_s=8000.0,
        providers_rate_limited=3,
    )
    decision = decide(signals)
    assert decision.criteria_met == (
        "p2-quality-degradation",
        "p2-slo-violation",
        "p2-model-quota-exhaustion",
        "p2-cascading-failures",
    )
    assert len(decision.reasons) == 4


def test_all_no_go_criteria_are_listed():
    decision = decide(world(failing("repo-01", failures=10), config_validation_errors=("bad",)))
    assert decision.criteria_met == ("nogo-single-repo", "nogo-intermittent", "nogo-user-error")
    assert decision.action == "isolate repo"


# --- Phase 6 versus Phase 7 mass failure -------------------------------------------------------------


def test_mass_failure_at_phase_6_is_p2_cascading_not_p1():
    # All 10 expanded repos fail with one cause: 10 is not > 10, but it is >= 3 with one cause.
    signals = world(*(failing(name, "model-timeout") for name in PHASE_6_REPOS))
    decision = decide(signals)
    assert decision.priority == "P2"
    assert decision.criteria_met == ("p2-cascading-failures",)
    assert decision.action == "triage then roll back"


def test_mass_failure_at_phase_7_is_p1():
    signals = world(*(failing(name, "model-timeout") for name in PHASE_7_REPOS), expanded=PHASE_7_REPOS)
    decision = decide(signals)
    assert decision.priority == "P1"
    assert decision.criteria_met == ("p1-mass-concurrent-failures",)
    assert decision.reasons == ("50 repos failing simultaneously (> 10)",)


# --- the incident table of CONVENTIONS ---------------------------------------------------------------


def _one_cause(expanded: tuple[str, ...], n: int | None = None) -> tuple[RepoSignal, ...]:
    return tuple(failing(name, "model-timeout") for name in expanded[: n or len(expanded)])


INCIDENT_SIGNALS = {
    "crash-loop": world(crash_loop_unavailable_s=960.0),
    "db-corruption": world(db_integrity_ok=False),
    "security-breach": world(credentials_leaked=True),
    "cost-runaway": world(daily_spend_usd=240.0),
    "mass-failure@6": world(*_one_cause(PHASE_6_REPOS)),
    "mass-failure@7": world(*_one_cause(PHASE_7_REPOS), expanded=PHASE_7_REPOS),
    "quality-degradation": world(*(healthy(name, kill_rate=0.45) for name in PHASE_6_REPOS[:6])),
    "slo-violation": world(p95_latency_s=185.0, p95_above_150s_for_s=7500.0),
    "model-outage": world(providers_rate_limited=3),
    "cascading-failure": world(*_one_cause(PHASE_6_REPOS, 3)),
    "single-repo-failure": world(failing("repo-05", failures=60)),
    "intermittent-errors": world(*(healthy(name, failures_last_hour=3) for name in PHASE_6_REPOS)),
    "user-error": world(config_validation_errors=("financial-reporting: config test-basel-i.json: missing 'family'",)),
}


@pytest.mark.parametrize(
    ("incident", "priority", "action", "criteria"),
    [
        ("crash-loop", "P1", "roll back", ("p1-crash-loop",)),
        ("db-corruption", "P1", "roll back", ("p1-db-corruption",)),
        ("security-breach", "P1", "roll back", ("p1-security-breach",)),
        ("cost-runaway", "P1", "roll back", ("p1-cost-runaway",)),
        ("mass-failure@6", "P2", "triage then roll back", ("p2-cascading-failures",)),
        ("mass-failure@7", "P1", "roll back", ("p1-mass-concurrent-failures",)),
        ("quality-degradation", "P2", "triage then roll back", ("p2-quality-degradation",)),
        ("slo-violation", "P2", "triage then roll back", ("p2-slo-violation",)),
        ("model-outage", "P2", "triage then roll back", ("p2-model-quota-exhaustion",)),
        ("cascading-failure", "P2", "triage then roll back", ("p2-cascading-failures",)),
        ("single-repo-failure", "NO-GO", "isolate repo", ("nogo-single-repo",)),
        ("intermittent-errors", "NO-GO", "do not roll back", ("nogo-intermittent",)),
        ("user-error", "NO-GO", "do not roll back", ("nogo-user-error",)),
    ],
)
def test_each_incident_of_the_table_gets_its_decision(incident, priority, action, criteria):
    decision = decide(INCIDENT_SIGNALS[incident])
    assert (decision.priority, decision.action, decision.criteria_met) == (priority, action, criteria)
    assert len(decision.reasons) == len(criteria)
    assert decision.triage_s == (1800.0 if priority == "P2" else 0.0)


def test_every_incident_of_the_table_is_covered():
    incidents = {name.split("@")[0] for name in INCIDENT_SIGNALS}
    assert incidents == {
        "crash-loop",
        "db-corruption",
        "security-breach",
        "cost-runaway",
        "mass-failure",
        "quality-degradation",
        "slo-violation",
        "model-outage",
        "cascading-failure",
        "single-repo-failure",
        "intermittent-errors",
        "user-error",
    }


# --- the criteria table and evidence -----------------------------------------------------------------


def test_every_criterion_a_decision_can_name_has_the_runbooks_wording():
    all_met = [decide(signals).criteria_met for signals in INCIDENT_SIGNALS.values()]
    for criteria in all_met:
        assert set(criteria) <= set(CRITERIA)
    assert len(CRITERIA) == 12
    assert CRITERIA["p1-crash-loop"] == "FlowEngine Crash Loop: Deployment unavailable >15 minutes"
    assert CRITERIA["nogo-single-repo"].endswith("see RB-CORE-001)")


def test_evidence_is_json_ready_and_has_the_agreed_keys():
    evidence = decide(INCIDENT_SIGNALS["mass-failure@6"]).as_evidence()
    assert set(evidence) == {"priority", "criteria_met", "action", "reasons", "triage_s"}
    assert json.loads(json.dumps(evidence)) == evidence
    assert evidence["criteria_met"] == ["p2-cascading-failures"]


def test_none_decision_evidence():
    assert decide(Signals()).as_evidence() == {
        "priority": "NONE",
        "criteria_met": [],
        "action": "do not roll back",
        "reasons": ["no rollback criterion met"],
        "triage_s": 0.0,
    }


# --- signals that cannot be right are refused --------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: RepoSignal("r", kill_rate=59.0),
        lambda: RepoSignal("r", kill_rate=-0.1),
        lambda: RepoSignal("r", failures_last_hour=-1),
        lambda: RepoSignal("r", flows_last_hour=-1),
        lambda: RepoSignal(""),
        lambda: Signals(repos=(RepoSignal("a"), RepoSignal("a"))),
        lambda: Signals(providers_rate_limited=4),
        lambda: Signals(daily_spend_usd=float("nan")),
        lambda: Signals(crash_loop_unavailable_s=-1.0),
    ],
)
def test_impossible_signals_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_a_percentage_passed_as_kill_rate_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"pass 0\.59 for 59 %"):
        RepoSignal("r", kill_rate=59.0)


# --- reading FlowEngine's /api/v1/signals ------------------------------------------------------------------

SIGNALS_PAYLOAD: dict[str, Any] = {
    "repos": [
        {"repo": PILOT, "failures_last_hour": 0, "flows_last_hour": 40, "cause": None, "kill_rate": 0.8},
        *(
            {"repo": name, "failures_last_hour": 8, "flows_last_hour": 8, "cause": f"cause-{i}", "kill_rate": None}
            for i, name in enumerate(PHASE_7_REPOS[:11])
        ),
    ],
    "crash_loop_unavailable_s": 12.5,
    "db_integrity_ok": True,
    "credentials_leaked": False,
    "daily_spend_usd": 31.0,
    "p95_latency_s": 40.0,
    "p95_above_150s_for_s": 0,
    "providers_rate_limited": 1,
    "config_validation_errors": ["repo-04: unknown block family"],
}


def test_the_signals_payload_becomes_signals_field_by_field():
    signals = to_decision_signals(SIGNALS_PAYLOAD)
    assert signals.repos[0] == RepoSignal(PILOT, failures_last_hour=0, flows_last_hour=40, kill_rate=0.8)
    assert signals.repos[1] == RepoSignal("repo-01", failures_last_hour=8, flows_last_hour=8, cause="cause-0")
    assert len(signals.repos) == 12
    assert signals.crash_loop_unavailable_s == 12.5
    assert signals.daily_spend_usd == 31.0
    assert signals.p95_latency_s == 40.0
    assert signals.providers_rate_limited == 1
    assert signals.config_validation_errors == ("repo-04: unknown block family",)


def test_missing_fields_of_the_signals_payload_read_as_nothing_wrong():
    assert to_decision_signals({}) == Signals()


@pytest.mark.parametrize(
    "payload",
    [
        {"repos": [{"failures_last_hour": 3}]},
        {"repos": [{"repo": "r", "kill_rate": 59}]},
        {"daily_spend_usd": "a lot"},
        {"providers_rate_limited": 4},
    ],
)
def test_a_signals_payload_that_does_not_fit_is_refused_with_the_fix(payload):
    with pytest.raises(InputError, match="point --flowengine-url at a FlowEngine that serves the drill's signals API"):
        to_decision_signals(payload)


@pytest.fixture
def signals_server() -> Iterator[str]:
    """A FlowEngine that answers /api/v1/signals only, with SIGNALS_PAYLOAD."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(SIGNALS_PAYLOAD).encode() if self.path == "/api/v1/signals" else b"{}"
            self.send_response(200 if self.path == "/api/v1/signals" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_live_decision_reads_the_signals_flowengine_serves(signals_server):
    decision = decide_live(FlowEngineClient(signals_server, timeout_s=5))
    assert decision == decide(to_decision_signals(SIGNALS_PAYLOAD))
    assert decision.priority == "P1"
    assert decision.criteria_met == ("p1-mass-concurrent-failures",)
