"""Steps for the drill world: seeding, allowlist semantics, incident signals. Shared by the runbook features."""

from __future__ import annotations

import yaml
from kubernetes import client
from pytest_bdd import given, parsers, then, when

from rollback_drill.config import default_config_path, load_config
from rollback_drill.flowengine.client import FlowEngineUnavailable
from rollback_drill.kube.pods import restart_count
from rollback_drill.kube.rollout import wait_for_rollout
from rollback_drill.kube.rules import PrometheusRules
from rollback_drill.runbook import perform
from rollback_drill.runbook.actions import RESTRICTED_REASON, crash_looping_pods, set_allowlist
from rollback_drill.runbook.decision import decide_live
from rollback_drill.runbook.probes import EXPANDED_PROBE_HZ, PILOT_PROBE_HZ, expanded_config_call, pilot_flow_call
from rollback_drill.timing.probe import Probe, failed_requests, split_at_first_refusal
from rollback_drill.timing.wait import wait_until
from rollback_drill.world.manifests import standing_rule_names


@given(parsers.parse("the drill world at Phase {phase:d}"), target_fixture="world")
def _world_at_phase(world_seeder, phase):
    return world_seeder(phase)


@given(
    parsers.parse('a drill configuration with pilot "{pilot}" and {count:d} expanded repos'),
    target_fixture="custom_config",
)
def _custom_config(tmp_path, pilot, count):
    data = yaml.safe_load(default_config_path().read_text())
    repos = [f"service-{i:02d}" for i in range(count)]
    data["pilot_repo"] = pilot
    data["expanded_repos"] = {"phase_6": repos, "phase_7": repos}
    data["soak"]["repos"] = repos[:2]
    data["reenablement"]["canary"] = repos[0]
    data["reenablement"]["phase_2"] = repos[1:4]
    path = tmp_path / "drill.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@when(parsers.parse("the drill world is seeded at Phase {phase:d} from it"), target_fixture="world")
def _seed_custom(world_seeder, custom_config, phase):
    return world_seeder(phase, custom_config)


@then("REPO_ALLOWLIST of deployment/flowengine lists the pilot and the 10 expanded repos")
def _allowlist_phase6(world, drill_config):
    assert world.allowlist == drill_config.allowlist_for(6), world.allowlist


@then(parsers.parse('REPO_ALLOWLIST of deployment/flowengine lists "{pilot}" and the {count:d} expanded repos'))
def _allowlist_custom(world, custom_config, pilot, count):
    assert world.allowlist[0] == pilot
    assert world.allowlist == custom_config.allowlist_for(6)
    assert len(world.allowlist) == count + 1


@then(parsers.parse("deployment/flowengine runs {replicas:d} replicas, all available"))
def _replicas(k8s_api, drill_config, replicas):
    names = drill_config.kubernetes
    status = client.AppsV1Api(k8s_api).read_namespaced_deployment_status(names.deployment, names.namespace).status
    assert (status.replicas, status.available_replicas) == (replicas, replicas), status


@then(parsers.parse("configmap/repo-config lists the {count:d} expanded repos separated by white space"))
def _configmap(k8s_api, world, drill_config, count):
    names = drill_config.kubernetes
    cm = client.CoreV1Api(k8s_api).read_namespaced_config_map(names.configmap, names.namespace)
    value = cm.data["expanded_repos"]
    assert len(value.split()) == count
    assert "," not in value
    assert value.split() == list(world.expanded_repos)


@then(
    parsers.parse(
        'there is one PrometheusRule "<repo>-alerts" per expanded repo in namespace "{namespace}", '
        "beside the pilot's own and the crash-loop rule"
    )
)
def _rules(k8s_api, drill_config, namespace):
    names = PrometheusRules(k8s_api, namespace).names()
    expanded = {f"{repo}-alerts" for repo in drill_config.expanded_for(6)}
    expected = expanded | standing_rule_names(drill_config.pilot_repo)
    assert names == expected, sorted(names ^ expected)


@then(
    parsers.parse(
        'there are {count:d} PrometheusRules of expanded repos in namespace "{namespace}", '
        "beside the pilot's own and the crash-loop rule"
    )
)
def _rule_count(k8s_api, world, count, namespace):
    names = PrometheusRules(k8s_api, namespace).names()
    standing = standing_rule_names(str(world.pilot_repo))
    assert standing <= names, sorted(standing - names)
    assert len(names - standing) == count, sorted(names - standing)


@then(parsers.parse('the TaskDB schema version is later than "{version}"'))
def _schema_later(world, version):
    assert world.schema_version is not None
    assert world.schema_version > version, world.schema_version


@given(parsers.parse('a probe on repo "{repo}" is running'), target_fixture="expanded_probe")
def _expanded_probe(flowengine, repo):
    probe = Probe(f"expanded:{repo}", expanded_config_call(flowengine, repo), rate_hz=EXPANDED_PROBE_HZ * 2).start()
    yield probe
    probe.stop()


@given("the pilot probe is running", target_fixture="pilot_probe")
def _pilot_probe(flowengine, drill_config):
    probe = Probe("pilot", pilot_flow_call(flowengine, drill_config.pilot_repo), rate_hz=PILOT_PROBE_HZ).start()
    yield probe
    probe.stop()


@when("REPO_ALLOWLIST of deployment/flowengine is set to the pilot only", target_fixture="patched_at")
def _set_pilot_only(runbook, drill_clock):
    patched_at = drill_clock.monotonic()
    set_allowlist(runbook, (runbook.config.pilot_repo,), action="restrict the allowlist")
    return patched_at


@when("the rollout of deployment/flowengine completes", target_fixture="rolled_out_at")
def _rollout_completes(runbook, drill_clock):
    wait_for_rollout(runbook.api, runbook.namespace, runbook.deployment_name, timeout_s=120)
    return drill_clock.monotonic()


@then(parsers.parse('repo "{repo}" was still served after the patch, then refused with reason "{reason}"'))
def _served_then_refused(expanded_probe, flowengine, patched_at, rolled_out_at, repo, reason):
    wait_until(lambda: flowengine.repo_config(repo).reason == reason, timeout_s=10, describe=f"{repo} refused")
    switch = split_at_first_refusal(expanded_probe.samples(), since=patched_at)
    before, after = [s.outcome for s in switch.before], [s.outcome for s in switch.after]
    assert before, f"{repo} was never served after the patch: {[o.kind for o in after[:20]]}"
    assert all(o.kind == "served" for o in before), [o.kind for o in before]
    assert after, "no refusal was seen after the rollout"
    assert all(o.kind == "refused" and o.detail == reason for o in after), after[:5]
    assert switch.refused_at <= rolled_out_at + 1.0, "refusals began well after the rollout completed"
    assert reason == RESTRICTED_REASON


@then(parsers.parse('repo "{repo}" is enabled'))
def _enabled(flowengine, repo):
    assert flowengine.repo_config(repo).enabled


@then(parsers.parse('repo "{repo}" is disabled with reason "{reason}"'))
def _disabled(flowengine, repo, reason):
    config = flowengine.repo_config(repo)
    assert (config.enabled, config.reason) == (False, reason), config


@then(parsers.parse("the pilot probe saw {count:d} failed requests"))
def _pilot_failures(pilot_probe, count):
    samples = pilot_probe.samples()
    assert samples, "the pilot probe made no requests"
    failed = failed_requests(samples)
    assert failed == count, [s.outcome for s in samples if not s.outcome.ok][:5]


@when(parsers.parse('the incident "{name}" is injected'), target_fixture="injection")
def _inject(incident_stage, marks, recorder, world, name):
    return perform.inject_incident(name, incident_stage, marks=marks, recorder=recorder, phase=world.phase)


@then("the flowengine pods go into CrashLoopBackOff with rising restart counts")
def _crash_loop(runbook):
    wait_until(lambda: crash_looping_pods(runbook), timeout_s=30, describe="pods in CrashLoopBackOff")
    first = restart_count(runbook.pods())
    wait_until(lambda: restart_count(runbook.pods()) > first, timeout_s=30, describe=f"restart count above {first}")


@then("deployment/flowengine has no available replica")
def _none_available(runbook):
    wait_until(
        lambda: not (runbook.deployment().status.available_replicas or 0),
        timeout_s=30,
        describe="deployment/flowengine with 0 available replicas",
    )


@then("the pilot repo is unavailable")
def _pilot_unavailable(flowengine, drill_config):
    def refused() -> bool:
        try:
            flowengine.repo_config(drill_config.pilot_repo)
        except FlowEngineUnavailable:
            return True
        return False

    wait_until(refused, timeout_s=10, describe="the pilot repo answered with 503")


@then(parsers.parse('the decision framework, reading the live signals, decides "{priority}"'))
def _live_decision(flowengine, priority):
    decision = wait_until(
        lambda: (d := decide_live(flowengine)).priority == priority and d,
        timeout_s=15,
        describe=f"a {priority} decision from the live signals",
    )
    assert decision.priority == priority


@then(parsers.parse('"{name}" is listed as an active injection'))
def _active(flowengine, name):
    assert name in {record.name for record in flowengine.incidents()}


@when("all injections are cleared")
def _clear(flowengine):
    flowengine.clear_incidents()


@then("no injection is active")
def _none_active(flowengine):
    assert flowengine.incidents() == ()
