#!/bin/bash
# containerd ExecStartPre (rollback-drill): where the node's capability bounding set lacks
# CAP_SYS_RESOURCE (some VMs), no process may lower its oom_score_adj, and runc fails every pod
# sandbox the kubelet asks for at -998 ("nsexec: failed to update /proc/self/oom_score_adj:
# Permission denied"). containerd's restrict_oom_score_adj then clamps pods at containerd's own
# value instead. Where the capability exists, the file is left alone (kind's entrypoint
# sets the option itself for rootless nodes).
set -eu
config=/etc/containerd/config.toml
bounding=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if (( ((16#$bounding) >> 24 & 1) == 0 )); then
  sed -i 's/^\(\s*restrict_oom_score_adj = \)false/\1true/' "$config"
fi
