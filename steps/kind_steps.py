"""Steps for features/kind.feature: a real kind cluster, its control plane, CNI, real rollouts and FlowEngine pods."""

from __future__ import annotations

import ipaddress
import subprocess

from kubernetes import client
from pytest_bdd import given, parsers, then, when

from rollback_drill.kube.rollout import wait_for_rollout
from rollback_drill.targets import kind
from rollback_drill.timing.wait import wait_until
from rollback_drill.toolchain.build import ensure_binaries

POD_SUBNET = ipaddress.ip_network("10.244.0.0/16")
"""kind's default pod subnet."""
HTTP_PORT = 8080


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


def _running_by_component(core: client.CoreV1Api, namespace: str, wanted: list[str]) -> dict[str, list[str]]:
    pods = core.list_namespaced_pod(namespace).items
    seen: dict[str, list[str]] = {name: [] for name in wanted}
    for pod in pods:
        for name in wanted:
            if pod.metadata.name.startswith(name + "-"):
                ready = all(s.ready for s in pod.status.container_statuses or []) and bool(
                    pod.status.container_statuses
                )
                seen[name].append(f"{pod.metadata.name}:{pod.status.phase}:{'ready' if ready else 'not-ready'}")
    return seen


@then(parsers.parse("in namespace {namespace} of the kind cluster these pods are Running:"))
def _pods_running(kind_api, namespace, datatable):
    wanted = [row[0] for row in datatable[1:]]
    core = client.CoreV1Api(kind_api)

    def all_running():
        seen = _running_by_component(core, namespace, wanted)
        if all(states and all(":Running:ready" in s for s in states) for states in seen.values()):
            return seen
        return None

    seen = wait_until(
        all_running,
        timeout_s=120,
        interval_s=2,
        describe=f"pods {', '.join(wanted)} Running and ready in {namespace}",
    )
    assert all(seen.values())


@given("a tiny image built on this machine and loaded into the kind cluster under a unique tag", target_fixture="app")
def _image(kind_cluster, kind_app_image):
    kind.load_image(kind_cluster, kind_app_image)
    return kind_app_image


def _hello_deployment(name: str, image: str, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    script = (
        'mkdir -p /tmp/www && echo "hello from $(hostname)" > /tmp/www/index.html '
        f"&& exec busybox httpd -f -p {HTTP_PORT} -h /tmp/www"
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name=name,
                            image=image,
                            image_pull_policy="Never",
                            command=["/bin/busybox", "sh", "-c", script],
                            ports=[client.V1ContainerPort(container_port=HTTP_PORT)],
                            readiness_probe=client.V1Probe(
                                http_get=client.V1HTTPGetAction(path="/", port=HTTP_PORT), period_seconds=2
                            ),
                        )
                    ]
                ),
            ),
        ),
    )


@when(
    parsers.parse(
        'a Deployment "{name}" of that image with {replicas:d} replicas is created in a scratch namespace '
        "of the kind cluster"
    ),
    target_fixture="deployment",
)
def _create(kind_api, kind_namespace, app, name, replicas):
    client.AppsV1Api(kind_api).create_namespaced_deployment(kind_namespace, _hello_deployment(name, app, replicas))
    client.CoreV1Api(kind_api).create_namespaced_service(
        kind_namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(
                selector={"app": name},
                ports=[client.V1ServicePort(port=80, target_port=HTTP_PORT)],
            ),
        ),
    )
    return name


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
    for pod in pods:
        assert pod.status.phase == "Running", f"{pod.metadata.name}: {pod.status.phase}"
        assert pod.spec.node_name in nodes, f"{pod.metadata.name} on {pod.spec.node_name}, kind nodes {nodes}"
        assert ipaddress.ip_address(pod.status.pod_ip) in POD_SUBNET, f"{pod.metadata.name}: {pod.status.pod_ip}"
        statuses = pod.status.container_statuses or []
        assert statuses, f"{pod.metadata.name}: no container status"
        assert all(s.ready and s.container_id.startswith("containerd://") for s in statuses), statuses


@then(parsers.parse("a pod of the kind cluster fetches a page from deployment/{name} through its Service"))
def _through_service(kind_api, kind_namespace, app, name):
    core = client.CoreV1Api(kind_api)
    host = f"{name}.{kind_namespace}.svc.cluster.local"
    url = f"http://{host}/"
    # Debian's static (glibc) busybox crashes in wget on a host name and with -T, so the name goes
    # through busybox's own nslookup (CoreDNS, via the kube-dns Service) and wget gets IP and port;
    # the pod's activeDeadlineSeconds bounds a hung connection instead of -T.
    script = (
        "for i in $(busybox seq 1 30); do "
        f"ip=$(busybox nslookup {host} | busybox sed -n 's/^Address: *\\([0-9.]*\\)$/\\1/p' | busybox tail -n 1); "
        '[ -n "$ip" ] && busybox wget -q -O - "http://$ip:80/" && exit 0; busybox sleep 2; done; exit 1'
    )
    core.create_namespaced_pod(
        kind_namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="fetch"),
            spec=client.V1PodSpec(
                restart_policy="Never",
                active_deadline_seconds=110,
                containers=[
                    client.V1Container(
                        name="fetch", image=app, image_pull_policy="Never", command=["/bin/busybox", "sh", "-c", script]
                    )
                ],
            ),
        ),
    )

    def finished():
        phase = core.read_namespaced_pod("fetch", kind_namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_until(finished, timeout_s=120, interval_s=2, describe=f"pod fetch getting {url}")
    log = core.read_namespaced_pod_log("fetch", kind_namespace)
    assert phase == "Succeeded", f"fetch {url}: {phase}; log: {log!r}"
    assert log.startswith("hello from hello-"), f"page: {log!r}"


# --- FlowEngine as real pods -------------------------------------------------------------------------


def _serving_pods(runbook) -> list[client.V1Pod]:
    """The flowengine pods of production that are not on their way out."""
    return [p for p in runbook.pods() if not p.metadata.deletion_timestamp]


@then("every flowengine pod runs the simulator image on a kind node, Ready, with an IP from the pod network")
def _flowengine_pods(runbook, kind_cluster, drill_env, drill_config):
    image = drill_env.pod_runtime["image"]
    nodes = set(kind.node_containers(kind_cluster.name))
    pods = _serving_pods(runbook)
    assert pods, "no flowengine pod"
    for pod in pods:
        name = pod.metadata.name
        assert pod.status.phase == "Running", f"{name}: {pod.status.phase}"
        assert pod.spec.node_name in nodes, f"{name} on {pod.spec.node_name}, kind nodes {nodes}"
        assert ipaddress.ip_address(pod.status.pod_ip) in POD_SUBNET, f"{name}: {pod.status.pod_ip}"
        (status,) = [s for s in pod.status.container_statuses or [] if s.name == drill_config.kubernetes.container]
        assert status.ready, f"{name}: container not ready ({status.state})"
        assert status.container_id.startswith("containerd://"), f"{name}: {status.container_id}"
        assert status.image.endswith(image.split("/", 1)[-1]), f"{name} runs {status.image}, not {image}"


@then(parsers.parse('every flowengine pod logs the incident "{incident}" within {seconds:d} seconds'))
def _pods_log_incident(runbook, k8s_api, drill_config, incident, seconds):
    core = client.CoreV1Api(k8s_api)
    names = drill_config.kubernetes
    wanted = f"incident injected: {incident}"

    def silent_pods():
        silent = [
            pod.metadata.name
            for pod in _serving_pods(runbook)
            if wanted not in core.read_namespaced_pod_log(pod.metadata.name, names.namespace, container=names.container)
        ]
        return None if silent else True

    wait_until(
        silent_pods,
        timeout_s=seconds,
        interval_s=1,
        describe=f"every flowengine pod's log (kubectl logs) to show {wanted!r}",
        hint="each pod reads the injections the others wrote to TaskDB twice a second",
    )


@then("kubectl exec in every flowengine pod prints a REPO_ALLOWLIST of only the pilot")
def _exec_allowlist(runbook, cluster, drill_config):
    kubectl = str(ensure_binaries()["kubectl"])
    names = drill_config.kubernetes
    pods = _serving_pods(runbook)
    assert pods, "no flowengine pod"
    for pod in pods:
        argv = [
            kubectl, "--kubeconfig", cluster.kubeconfig, "exec", "-n", names.namespace, pod.metadata.name,
            "-c", names.container, "--", "printenv", "REPO_ALLOWLIST",
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"kubectl exec {pod.metadata.name}: {proc.stderr.strip()}"
        assert proc.stdout.strip() == drill_config.pilot_repo, f"{pod.metadata.name}: {proc.stdout.strip()!r}"
