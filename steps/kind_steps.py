"""Steps for features/kind.feature: a real kind cluster, its control plane, CNI, real rollouts and FlowEngine pods."""

from __future__ import annotations

from kubernetes import client
from pytest_bdd import given, parsers, then, when

from rollback_drill.kube.kubectl import kubectl_exec
from rollback_drill.kube.pods import not_terminating, pod_name, wait_components_running, wait_logs_show
from rollback_drill.kube.rollout import wait_for_rollout
from rollback_drill.targets import kind
from rollback_drill.targets.kind_checks import create_hello_app, fetch_through_service, pod_problems
from rollback_drill.toolchain.build import ensure_binaries


@given("a kind cluster created by the drill")
def _kind(kind_cluster):
    return kind_cluster


@then("every node of the kind cluster is Ready")
def _nodes_ready(kind_api, kind_cluster):
    nodes = client.CoreV1Api(kind_api).list_node().items
    ready = {
        n.metadata.name: any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []) for n in nodes
    }
    assert len(nodes) == 1 + kind_cluster.workers, f"nodes: {sorted(ready)}"
    assert all(ready.values()), f"node readiness: {ready}"
    containers = kind.node_containers(kind_cluster.name)
    assert sorted(ready) == containers, f"nodes {sorted(ready)} vs kind's containers {containers}"


@then(parsers.parse('the kind API server reports a version starting with "{prefix}"'))
def _version(kind_api, prefix):
    version = client.VersionApi(kind_api).get_code().git_version
    assert version.startswith(prefix), f"server version is {version}"


@then(parsers.parse("in namespace {namespace} of the kind cluster these pods are Running:"))
def _pods_running(kind_api, namespace, datatable):
    seen = wait_components_running(kind_api, namespace, [row[0] for row in datatable[1:]], timeout_s=120)
    assert all(seen.values())


@given("a tiny image built on this machine and loaded into the kind cluster under a unique tag", target_fixture="app")
def _image(kind_cluster, kind_app_image):
    kind.load_image(kind_cluster, kind_app_image)
    return kind_app_image


@when(
    parsers.parse(
        'a Deployment "{name}" of that image with {replicas:d} replicas is created in a scratch namespace '
        "of the kind cluster"
    ),
    target_fixture="deployment",
)
def _create(kind_api, kind_namespace, app, name, replicas):
    return create_hello_app(kind_api, kind_namespace, name, app, replicas)


@then(
    parsers.parse(
        "the rollout of deployment/{name} in the kind cluster completes with {replicas:d} available replicas "
        "within {seconds:d} seconds"
    )
)
def _rollout(kind_api, kind_namespace, name, replicas, seconds):
    wait_for_rollout(kind_api, kind_namespace, name, timeout_s=seconds)
    status = client.AppsV1Api(kind_api).read_namespaced_deployment_status(name, kind_namespace).status
    assert status.available_replicas == replicas, f"available replicas: {status.available_replicas}"


@then(parsers.parse("every pod of deployment/{name} runs on a kind node with an IP from the pod network"))
def _pods(kind_api, kind_cluster, kind_namespace, name):
    pods = client.CoreV1Api(kind_api).list_namespaced_pod(kind_namespace, label_selector=f"app={name}").items
    nodes = set(kind.node_containers(kind_cluster.name))
    assert pods, "no pods"
    problems = [problem for pod in pods for problem in pod_problems(pod, nodes)]
    assert not problems, problems


@then(parsers.parse("a pod of the kind cluster fetches a page from deployment/{name} through its Service"))
def _through_service(kind_api, kind_namespace, app, name):
    fetch = fetch_through_service(kind_api, kind_namespace, name, app)
    assert fetch.phase == "Succeeded", f"fetch {fetch.url}: {fetch.phase}; log: {fetch.log!r}"
    assert fetch.log.startswith(f"hello from {name}-"), f"page: {fetch.log!r}"


# --- FlowEngine as real pods -------------------------------------------------------------------------


@then("every flowengine pod runs the simulator image on a kind node, Ready, with an IP from the pod network")
def _flowengine_pods(runbook, kind_cluster, drill_env, drill_config):
    nodes = set(kind.node_containers(kind_cluster.name))
    image, container = drill_env.pod_runtime["image"], drill_config.kubernetes.container
    pods = not_terminating(runbook.pods())
    assert pods, "no flowengine pod"
    problems = [p for pod in pods for p in pod_problems(pod, nodes, container=container, image=image)]
    assert not problems, problems


@then(parsers.parse('every flowengine pod logs the incident "{incident}" within {seconds:d} seconds'))
def _pods_log_incident(runbook, k8s_api, drill_config, incident, seconds):
    names = drill_config.kubernetes
    wait_logs_show(
        k8s_api,
        names.namespace,
        names.container,
        lambda: not_terminating(runbook.pods()),
        f"incident injected: {incident}",
        timeout_s=seconds,
        hint="each pod reads the injections the others wrote to TaskDB twice a second",
    )


@then("kubectl exec in every flowengine pod prints a REPO_ALLOWLIST of only the pilot")
def _exec_allowlist(runbook, cluster, drill_config):
    names = drill_config.kubernetes
    pods = not_terminating(runbook.pods())
    assert pods, "no flowengine pod"
    kubectl, where = ensure_binaries()["kubectl"], {"namespace": names.namespace, "container": names.container}
    for name in map(pod_name, pods):
        printed = kubectl_exec(kubectl, cluster.kubeconfig, name, ["printenv", "REPO_ALLOWLIST"], **where)
        assert printed.returncode == 0, f"kubectl exec {name}: {printed.stderr.strip()}"
        assert printed.stdout.strip() == drill_config.pilot_repo, f"{name}: {printed.stdout.strip()!r}"
