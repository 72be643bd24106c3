#!/bin/sh
# rbdnet: keep this node's CNI configuration and the routes to the other nodes' pod subnets.
# Pod traffic leaving the node's pod subnet is masqueraded (ptp's ipMasq), so that pods reach
# containers on kind's Docker network (TaskDB) with the node's address, as kindnetd does.
set -u
sa=/var/run/secrets/kubernetes.io/serviceaccount
server="https://${CONTROL_PLANE_ENDPOINT:-${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}}"
conf=/etc/cni/net.d/10-rbdnet.conflist
k() { kubectl --server="$server" --certificate-authority="$sa/ca.crt" --token="$(cat "$sa/token")" "$@"; }
log() { echo "$(date +%T) rbdnet: $*"; }
log "node $NODE_NAME, API server $server"
written=
while :; do
  cidr=$(k get node "$NODE_NAME" -o 'jsonpath={.spec.podCIDR}' 2>/tmp/err) || { log "$(cat /tmp/err)"; cidr=; }
  if [ -n "$cidr" ] && [ "$cidr" != "$written" ]; then
    cat >"$conf.tmp" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "rbdnet",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": true,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "ranges": [[{ "subnet": "$cidr" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
    mv "$conf.tmp" "$conf"
    written=$cidr
    log "wrote $conf for podCIDR $cidr"
  fi
  k get nodes -o 'jsonpath={range .items[*]}{.metadata.name}{" "}{.spec.podCIDR}{" "}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}' 2>/dev/null |
    while read -r name podcidr ip; do
      [ "$name" = "$NODE_NAME" ] && continue
      [ -n "$podcidr" ] && [ -n "$ip" ] || continue
      ip route replace "$podcidr" via "$ip" || log "cannot route $podcidr via $ip"
    done
  sleep 10
done
