#!/bin/sh
# Build what the kind target needs, offline, into the cache (each part is reused when cached):
# kind (from the Go module proxy), kubelet/kubeadm/kube-proxy/coredns/pause (Go), and the
# node image rollback-drill/kind-node:<kubernetes version>-<hash of its inputs> (debootstrap
# of Debian bookworm + docker import; see src/rollback_drill/toolchain/kind_image.py), and the
# FlowEngine simulator image the drill runs as pods (toolchain/flowengine_image.py).
# Everything runs at nice 19: the Go builds take minutes of both cores on a cold cache.
# usage: scripts/build-kind-node.sh        prints the kind binary and the node image tag
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-$here/../.venv/bin/python}
exec nice -n 19 "$python" -c '
from rollback_drill.toolchain import flowengine_image, kind_image
kind = kind_image.ensure_kind()
image = kind_image.ensure_node_image()
flowengine = flowengine_image.ensure_image()
print(f"kind {kind}")
print(f"image {image}")
print(f"flowengine {flowengine}")
'
