"""Steps for features/environment.feature: the cluster and TaskDB themselves."""

from __future__ import annotations

from kubernetes import client
from pytest_bdd import given, parsers, then, when

from rollback_drill.kube.access import forbidden_status, service_account_client
from rollback_drill.kube.objects import simple_deployment
from rollback_drill.kube.rollout import wait_for_rollout
from rollback_drill.taskdb.backup import PROBE_TABLE, probe_round_trip
from rollback_drill.taskdb.providers import DSN_ENV


@given("the drill cluster")
def _drill_cluster(cluster):
    return cluster


@given("a scratch namespace", target_fixture="namespace")
def _scratch(scratch_namespace):
    return scratch_namespace


@given("the TaskDB")
def _the_taskdb(taskdb):
    return taskdb


@then(parsers.parse('the API server reports a version starting with "{prefix}"'))
def _version(cluster, prefix):
    assert cluster.server_version.startswith(prefix), f"server version is {cluster.server_version}"


@then(parsers.parse("at least {count:d} node is Ready"))
def _nodes_ready(k8s_api, count):
    nodes = client.CoreV1Api(k8s_api).list_node().items
    ready = [
        n.metadata.name
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    ]
    assert len(ready) >= count, f"Ready nodes: {ready} of {[n.metadata.name for n in nodes]}"


@when(parsers.parse('a Deployment "{name}" with {replicas:d} replicas is created there'))
def _create_deployment(k8s_api, namespace, name, replicas):
    client.AppsV1Api(k8s_api).create_namespaced_deployment(namespace, simple_deployment(name, replicas))


@then(
    parsers.parse(
        "the rollout of deployment/{name} completes with {replicas:d} available replicas within {seconds:d} seconds"
    )
)
def _rollout(k8s_api, namespace, name, replicas, seconds):
    wait_for_rollout(k8s_api, namespace, name, timeout_s=seconds)
    status = client.AppsV1Api(k8s_api).read_namespaced_deployment_status(name, namespace).status
    assert status.available_replicas == replicas, f"available replicas: {status.available_replicas}"


@given(parsers.parse('a ServiceAccount "{name}" without any role there'), target_fixture="service_account")
def _service_account(k8s_api, namespace, name):
    client.CoreV1Api(k8s_api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    return name


@when(parsers.parse('"{name}" tries to list deployments in namespace "{target}"'), target_fixture="refusal_status")
def _try_list(k8s_api, namespace, service_account, name, target):
    as_sa = service_account_client(k8s_api, namespace, name)
    try:
        return forbidden_status(lambda: client.AppsV1Api(as_sa).list_namespaced_deployment(target))
    finally:
        as_sa.close()


@then(parsers.parse("the API server refuses with status {status:d}"))
def _refused(refusal_status, status):
    assert refusal_status == status


@then(parsers.parse("it reports PostgreSQL major version {major:d}"))
def _pg_version(taskdb, major):
    with taskdb.connect() as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert int(row[0]) // 10000 == major, f"server_version_num {row[0]}"


@then("a pg_dump of it restores into a scratch database with the same rows")
def _dump_restores(taskdb, tmp_path):
    check = probe_round_trip(taskdb, tmp_path, rows=25)
    assert check.matches, "; ".join(check.mismatches)
    assert check.tables[PROBE_TABLE].rows >= 25


@given("a second control plane started outside any drill environment", target_fixture="outside_cluster")
def _outside_cluster(outside_control_plane):
    return outside_control_plane


@when(
    "the drill is run against it with --target kubeconfig and no allowlist",
    target_fixture="guard_run",
)
def _run_against_outside(outside_cluster, run_cli, taskdb):
    # A kubeconfig target goes with its TaskDB by DSN; a reachable one, so that the cluster is what is refused.
    return run_cli(
        "run", "--target", "kubeconfig", "--kubeconfig", outside_cluster.kubeconfig, "--taskdb", "dsn",
        env={DSN_ENV: taskdb.dsn},
    )  # fmt: skip


@then("the command exits with code 2 and one line naming the fingerprint and --cluster-allowlist")
def _refused_line(guard_run, outside_cluster):
    assert guard_run.returncode == 2, guard_run
    lines = guard_run.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert outside_cluster.fingerprint in lines[0]
    assert "--cluster-allowlist" in lines[0]


@then("no drill namespace was created on it")
def _untouched(outside_cluster):
    api = outside_cluster.api_client()
    try:
        names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
    finally:
        api.close()
    assert not names & {"production", "staging", "monitoring"}, names


@when("its fingerprint is written to an allowlist file", target_fixture="allowlist_file")
def _allowlist_file(outside_cluster, tmp_path):
    path = tmp_path / "allowlist"
    path.write_text(f"# staging-like cluster for the guard test\n{outside_cluster.fingerprint}  # added by the test\n")
    return path


@then('"rollback-drill check-target" accepts it with that allowlist')
def _accepted(outside_cluster, allowlist_file, run_cli):
    result = run_cli(
        "check-target", "--kubeconfig", outside_cluster.kubeconfig, "--cluster-allowlist", str(allowlist_file)
    )
    assert result.returncode == 0, result
    assert outside_cluster.fingerprint in result.stdout
