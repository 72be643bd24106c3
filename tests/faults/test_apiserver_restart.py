"""The API server crashes in the middle of Step 1.

On the default local target (real etcd, kube-apiserver, controller manager, scheduler and
kwok), with the drill world seeded and an incident injected, Step 1 is started and the
kube-apiserver process is killed (SIGKILL) the moment Step 1's patch lands, while Step 1
waits for the rollout. Then:

- started again after a few seconds, Step 1 either completes within its budget (the allowlist
  reads the pilot only and the rollout is done) or fails with one line naming the unreachable
  API server and what it had already changed;
- never started again within Step 1's deadline, Step 1 fails with that one line.

Either way the outcome is in the drill's evidence (the step's status and error in
evidence.json, its result in timeline.jsonl), recorded the way a drill records Step 1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from rollback_drill.config import DrillConfig
from rollback_drill.errors import ApiServerUnreachable
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.evidence.steps import StepGrouper
from rollback_drill.kube.rollout import ApiOutage, rollout_state
from rollback_drill.runbook import actions
from rollback_drill.targets import local
from rollback_drill.timing.windows import INCIDENT_INJECTED
from rollback_drill.world import incidents
from rollback_drill.world.manifests import allowlist_value
from rollback_drill.world.seed import allowlist_of

STEP_1 = 'the SRE performs Step 1 "Disable orchestrator for expanded repos" within 2 minutes'
STEP_1_BUDGET_S = 120.0
OUTAGE_S = 4.0
"""How long the API server stays down before it is started again: long enough for Step 1 to hit it
several times, far inside Step 1's budget."""


@dataclass(frozen=True)
class Step1Outcome:
    change: actions.AllowlistChange | None
    error: str | None


@dataclass(frozen=True)
class Kill:
    at_mono: float
    rollout_then: str
    """What kubectl's rules said of the Deployment the moment it was killed: the rollout was still to do."""


def _step_1(drill: Drill, timeout_s: float) -> Step1Outcome:
    """Step 1 as the drill performs it: the runbook step opens, the action runs, its result or error is recorded."""
    drill.step_grouper.gherkin_step_started(STEP_1)
    try:
        change = actions.restrict_allowlist(drill.runbook, timeout_s=timeout_s)
    except Exception as exc:  # noqa: BLE001 - recorded as the pytest-bdd hook records a failed step
        drill.step_grouper.gherkin_step_failed(f"{type(exc).__name__}: {exc}")
        return Step1Outcome(None, str(exc))
    drill.recorder.event("step_result", step="step-1", **change.evidence())
    drill.step_grouper.gherkin_step_passed()
    return Step1Outcome(change, None)


def _finish(drill: Drill, outcome: Step1Outcome) -> tuple[dict, list[dict]]:
    """Seal the record as the drill does at its end; return evidence.json and the timeline."""
    drill.step_grouper.scenario_finished()
    drill.recorder.finish("pass" if outcome.error is None else "fail")
    evidence = json.loads(Path(drill.recorder.evidence_path).read_text())
    lines = Path(drill.recorder.timeline_path).read_text().splitlines()
    return evidence, [json.loads(line) for line in lines if line.strip()]


def _kill_when_patched(drill: Drill, plane: local.LocalControlPlane, step: Future[Step1Outcome]) -> Kill:
    """Watch deployment/flowengine; SIGKILL the API server as soon as the Step 1 patch is visible."""
    names = drill.config.kubernetes
    apps = client.AppsV1Api(drill.k8s_api)
    pilot = (drill.config.pilot_repo,)
    stream = watch.Watch()
    for event in stream.stream(
        apps.list_namespaced_deployment,
        names.namespace,
        field_selector=f"metadata.name={names.deployment}",
        timeout_seconds=60,
    ):
        deployment = event["object"]
        if allowlist_of(deployment, names.container) != pilot:
            continue
        state = rollout_state(deployment)
        if step.done() or state.done:
            pytest.fail(f"Step 1 was past its rollout before the API server could be killed ({state.message})")
        local.kill(plane, "kube-apiserver")
        stream.stop()
        return Kill(time.monotonic(), state.message)
    pytest.fail("Step 1's patch of REPO_ALLOWLIST was not seen within 60s")


@dataclass(frozen=True)
class Drill:
    """What one Step 1 rehearsal acts on and records into."""

    runbook: actions.Runbook
    k8s_api: client.ApiClient
    config: DrillConfig
    recorder: Recorder
    step_grouper: StepGrouper


@pytest.fixture
def drill(world_seeder, flowengine, k8s_api, drill_config, marks, recorder, runbook, step_grouper) -> Drill:  # noqa: PLR0917 - the fixtures a drill is made of
    """The Phase 6 world, seeded afresh, with the default incident injected and recorded, as a drill starts."""
    world = world_seeder(6)
    record = incidents.inject("mass-failure", flowengine, k8s_api, drill_config)
    marks.mark(INCIDENT_INJECTED, overwrite=True)
    incidents.record_injection(recorder, record, world.phase)
    return Drill(runbook, k8s_api, drill_config, recorder, step_grouper)


@pytest.fixture
def control_plane(drill_env) -> Iterator[local.LocalControlPlane]:
    """The environment's control plane. Whatever a test restarted is written back to the state, so that
    the environment's teardown (or `env down`) stops the process now running, and a test that leaves
    the API server down starts it again for the tests after it."""
    if not drill_env.control_plane:
        pytest.skip("--env names an environment without a local control plane")
    yield local.LocalControlPlane.from_state(drill_env.control_plane)
    plane = local.LocalControlPlane.from_state(drill_env.control_plane)
    apiserver = next(p for p in plane.processes if p.name == "kube-apiserver")
    if not local.is_running(apiserver):
        drill_env.control_plane = local.start_again(plane, "kube-apiserver").to_state()
        drill_env.save()


def _restart_apiserver(drill_env) -> None:
    plane = local.start_again(local.LocalControlPlane.from_state(drill_env.control_plane), "kube-apiserver")
    drill_env.control_plane = plane.to_state()
    drill_env.save()


def _deployment_now(drill: Drill) -> client.V1Deployment:
    names = drill.config.kubernetes
    return client.AppsV1Api(drill.k8s_api).read_namespaced_deployment(names.deployment, names.namespace)


def _check_failure_line(drill: Drill, error: str) -> None:
    """One line, naming the unreachable API server and, truthfully, what Step 1 had changed."""
    assert "\n" not in error, error
    assert "API server" in error, error
    assert "unreachable" in error, error
    assert "REPO_ALLOWLIST" in error, error
    now = allowlist_of(_deployment_now(drill), drill.config.kubernetes.container)
    if now == (drill.config.pilot_repo,):
        assert "was not changed" not in error, f"the allowlist reads {allowlist_value(now)!r}; the error says: {error}"


@pytest.mark.slow
def test_step_1_survives_an_api_server_killed_mid_rollout(drill_env, control_plane, drill):
    pilot = drill.config.pilot_repo
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="step-1") as pool:
        step = pool.submit(_step_1, drill, STEP_1_BUDGET_S)
        kill = _kill_when_patched(drill, control_plane, step)
        wait_for_future([step], timeout=OUTAGE_S)  # the outage; Step 1 may give up during it, clearly
        restarted_after_s = time.monotonic() - kill.at_mono
        _restart_apiserver(drill_env)
        ready_after_s = time.monotonic() - kill.at_mono
        outcome = step.result(timeout=STEP_1_BUDGET_S + 30)
    evidence, timeline = _finish(drill, outcome)

    (entry,) = [s for s in evidence["steps"] if s["id"] == "step-1"]
    if outcome.error is None:
        change = outcome.change
        assert change is not None
        assert change.after == (pilot,)
        assert not change.already_done
        assert "successfully rolled out" in change.rollout, change.rollout
        assert change.api_server_unreachable_s > 0, "Step 1 reports no outage, though the API server was killed"
        assert entry["status"] == "pass", entry
        assert entry["elapsed_s"] <= entry["budget_s"] == STEP_1_BUDGET_S, entry
        (result,) = [e for e in timeline if e["kind"] == "step_result" and e["step"] == "step-1"]
        assert result["after"] == [pilot]
        assert result["api_server_unreachable_s"] > 0
        # The cluster agrees, read afresh after the restart.
        deployment = _deployment_now(drill)
        assert allowlist_of(deployment, drill.config.kubernetes.container) == (pilot,)
        assert rollout_state(deployment).done, rollout_state(deployment).message
        assert evidence["verdict"] == "pass"
    else:
        _check_failure_line(drill, outcome.error)
        assert entry["status"] == "fail", entry
        assert outcome.error in entry["error"], entry
        assert evidence["verdict"] == "fail"
    print(
        f"killed with the rollout at {kill.rollout_then!r}; started again after {restarted_after_s:.1f}s, "
        f"ready after {ready_after_s:.1f}s; Step 1: {entry['status']} in {entry['elapsed_s']:.1f}s"
    )


@pytest.mark.slow
def test_step_1_names_the_unreachable_api_server_when_it_does_not_come_back(drill_env, control_plane, drill):
    timeout_s = 8.0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="step-1") as pool:
        step = pool.submit(_step_1, drill, timeout_s)
        kill = _kill_when_patched(drill, control_plane, step)
        outcome = step.result(timeout=timeout_s + 30)
    failed_after_s = time.monotonic() - kill.at_mono
    _restart_apiserver(drill_env)
    evidence, _ = _finish(drill, outcome)

    assert outcome.error is not None, f"Step 1 passed with the API server down: {outcome.change}"
    _check_failure_line(drill, outcome.error)
    # Killed once the patch was visible: the line says the allowlist now reads (or may read) the pilot.
    assert repr(drill.config.pilot_repo) in outcome.error, outcome.error
    assert failed_after_s < timeout_s + 5, "Step 1 did not give up at its deadline"
    (entry,) = [s for s in evidence["steps"] if s["id"] == "step-1"]
    assert entry["status"] == "fail"
    assert outcome.error in entry["error"]
    assert evidence["verdict"] == "fail"
    print(f"Step 1 failed {failed_after_s:.1f}s after the kill: {outcome.error}")


# --- what counts as "the API server is unreachable": real sockets, no cluster needed -----------------


class _Answer(BaseHTTPRequestHandler):
    status = 503
    readyz = 200

    def do_GET(self):
        status = self.readyz if self.path.startswith("/readyz") else self.status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"kind":"Status","message":"from the test server"}')

    def log_message(self, *_args):
        pass


@pytest.fixture
def answering(request) -> Iterator[tuple[str, int]]:
    """An HTTP server on 127.0.0.1 that answers every request with one status code, and /readyz with another."""
    status, readyz = request.param
    handler = type("Handler", (_Answer,), {"status": status, "readyz": readyz})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", status
    server.shutdown()
    server.server_close()


def test_a_refused_connection_is_an_outage_and_its_end_is_timed():
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:1"))  # port 1 on loopback refuses at once
    now = [100.0]
    outage = ApiOutage(api, clock=lambda: now[0])
    with pytest.raises(ApiServerUnreachable, match=r"at http://127\.0\.0\.1:1 is unreachable \(connection refused\)"):
        outage.call(lambda: client.CoreV1Api(api).list_namespace())
    now[0] = 103.5
    assert outage.down_for_s == pytest.approx(3.5)
    assert outage.call(lambda: "answered") == "answered"
    assert outage.down_for_s is None
    assert outage.unreachable_s == pytest.approx(3.5)


@pytest.mark.parametrize(
    "answering",
    [(503, 200), (429, 200), (403, 500), (401, 403)],
    indirect=True,
    ids=["503", "429", "403-starting", "401-starting"],
)
def test_an_api_server_that_cannot_serve_yet_is_an_outage(answering):
    url, status = answering
    api = client.ApiClient(client.Configuration(host=url))
    with pytest.raises(ApiServerUnreachable, match=f"answered {status}"):
        ApiOutage(api).call(lambda: client.CoreV1Api(api).list_namespace())


@pytest.mark.parametrize("answering", [(403, 200), (404, 200)], indirect=True, ids=["403-ready", "404"])
def test_a_refusal_or_a_missing_object_is_not_waited_out(answering):
    url, status = answering
    api = client.ApiClient(client.Configuration(host=url))
    outage = ApiOutage(api)
    with pytest.raises(ApiException) as info:
        outage.call(lambda: client.CoreV1Api(api).list_namespace())
    assert info.value.status == status
    assert not isinstance(info.value, ApiServerUnreachable)
    assert outage.down_for_s is None
