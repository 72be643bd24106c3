"""The kind target and the offline node image recipe, without Docker or a cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rollback_drill.errors import InputError, ToolchainError
from rollback_drill.targets import kind
from rollback_drill.toolchain import kind_image


def test_cluster_config_binds_the_api_server_to_loopback():
    config = kind.cluster_config(workers=2)
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["networking"] == {"apiServerAddress": "127.0.0.1"}
    assert config["nodes"] == [{"role": "control-plane"}, {"role": "worker"}, {"role": "worker"}]


def test_negative_workers_are_refused():
    with pytest.raises(InputError, match="workers"):
        kind.cluster_config(workers=-1)


@pytest.mark.parametrize("name", ["rbd-1a2b3c", "drill", "a.b-c"])
def test_valid_cluster_names(name):
    assert kind.check_name(name) == name


@pytest.mark.parametrize("name", ["", "Drill", "-x", "x-", "has space", "x" * 43, "under_score"])
def test_invalid_cluster_names_are_refused(name):
    with pytest.raises(InputError, match="not valid"):
        kind.check_name(name)


def test_unique_tags_differ_and_are_not_latest():
    first, second = kind.unique_tag("local/app"), kind.unique_tag("local/app")
    assert first != second
    assert re.fullmatch(r"local/app:\d{14}-[0-9a-f]{6}", first)


@pytest.mark.parametrize("image", ["local/app", "local/app:latest", "registry:5000/app"])
def test_load_refuses_untagged_and_latest(image):
    cluster = kind.KindCluster(name="x", kubeconfig="/k", config="/c", image="i", kind="/bin/kind")
    with pytest.raises(InputError, match="latest"):
        kind.load_image(cluster, image)


def test_state_round_trip():
    cluster = kind.KindCluster(name="x", kubeconfig="/k", config="/c", image="i", kind="/bin/kind", workers=1)
    assert kind.KindCluster.from_state(cluster.to_state()) == cluster


def test_require_names_everything_missing(monkeypatch):
    monkeypatch.setattr(kind, "docker_reachable", lambda: (False, "Cannot connect to the Docker daemon"))
    monkeypatch.setattr(kind_image, "find_kind", lambda _cache=None: None)
    with pytest.raises(ToolchainError) as raised:
        kind.require()
    message = str(raised.value)
    assert "no Docker engine is reachable (Cannot connect to the Docker daemon)" in message
    assert "the kind binary is missing" in message
    assert "scripts/build-kind-node.sh" in message


def test_missing_node_image_is_named(monkeypatch, tmp_path):
    binary = tmp_path / "kind"
    binary.write_text("")
    monkeypatch.setattr(kind, "docker_reachable", lambda: (True, "20.10"))
    monkeypatch.setattr(kind_image, "find_node_image", lambda: None)
    problems = kind.missing(kind_binary=binary)
    assert len(problems) == 1
    assert "kind node image is missing" in problems[0]


def test_node_image_tag_hashes_its_inputs(tmp_path):
    files = tmp_path / "files"
    (files / "usr" / "local" / "bin").mkdir(parents=True)
    entrypoint = files / "usr" / "local" / "bin" / "entrypoint"
    entrypoint.write_text("#!/bin/sh\n")
    first = kind_image.node_image_tag(files)
    assert first == kind_image.node_image_tag(files)
    assert re.fullmatch(r"rollback-drill/kind-node:v1\.34\.4-[0-9a-f]{12}", first)
    entrypoint.write_text("#!/bin/sh\necho changed\n")
    assert kind_image.node_image_tag(files) != first


def test_recipe_files_are_packaged():
    recipe = Path(kind_image.__file__).parent.parent / "data" / "images" / "kind-node"
    names = ("build.sh", "default-cni.yaml", "default-storage.yaml", "rbdnet.sh", "restrict-oom-score-adj.sh")
    for name in (*names, "pause/main.go", "pause/go.mod"):
        assert (recipe / name).is_file(), name
    assert "@CNI_IMAGE@" in (recipe / "default-cni.yaml").read_text()


def test_without_go_the_newest_node_image_is_used(monkeypatch):
    def no_go(_files=None):
        raise ToolchainError("Go is not installed")

    monkeypatch.setattr(kind_image, "node_image_tag", no_go)
    monkeypatch.setattr(kind_image, "_newest_node_image", lambda: "rollback-drill/kind-node:v1.34.4-0123456789ab")
    assert kind_image.find_node_image() == "rollback-drill/kind-node:v1.34.4-0123456789ab"


def test_published_node_ports_listen_on_loopback_only():
    config = kind.cluster_config(published={30080: 41234})
    (control_plane,) = config["nodes"]
    assert control_plane["extraPortMappings"] == [
        {"containerPort": 30080, "hostPort": 41234, "listenAddress": "127.0.0.1", "protocol": "TCP"}
    ]


def test_a_published_node_port_has_a_loopback_url_and_survives_the_state_file():
    cluster = kind.KindCluster(
        name="x", kubeconfig="/k", config="/c", image="i", kind="/bin/kind", published={30080: 41234}
    )
    again = kind.KindCluster.from_state(cluster.to_state())
    assert again == cluster
    assert again.url(30080) == "http://127.0.0.1:41234"
    with pytest.raises(InputError, match="not published"):
        again.url(30081)
