#!/bin/sh
# Make privileged containers work on hosts whose capability bounding set lacks a capability
# Docker asks for (seen: CAP_SYS_RESOURCE in some VMs), so that kind's nodes can run.
#
# - Probes first: `docker run --privileged` and `docker exec --privileged` (kind uses both).
#   If both work, nothing is installed: ordinary Docker hosts need nothing from us.
# - Otherwise builds src/rollback_drill/data/images/runc-wrapper (Go, static) into
#   /usr/local/libexec/rollback-drill/runc-wrapper and registers it as dockerd's default
#   runtime in /etc/docker/daemon.json (the original is kept as daemon.json.rollback-drill.orig,
#   or daemon.json.rollback-drill.absent marks that there was none; scripts/uninstall-runc-wrapper.sh
#   undoes it).
# - dockerd reloads `runtimes` and `default-runtime` on SIGHUP, so running containers are not
#   touched. Only if the reload does not take is dockerd restarted, and only once no container
#   labelled `rollback-drill` runs (polled for up to 10 minutes; after that it restarts anyway
#   and says so).
# - Idempotent: a second run re-probes and does nothing when privileged containers work.
#
# usage: install-runc-wrapper.sh [--check]   (--check: probe and report only, exit 1 if needed)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../src/rollback_drill/data/images/runc-wrapper"
dest_dir=/usr/local/libexec/rollback-drill
dest="$dest_dir/runc-wrapper"
runtime_name=rollback-drill-runc
daemon_json=/etc/docker/daemon.json
probe_label=rollback-drill-kind=runc-probe
log() { echo "[runc-wrapper] $*" >&2; }

docker version >/dev/null 2>&1 || { log "no Docker engine answers; run scripts/ensure-docker.sh first"; exit 2; }

probe_image() {
  # any local image with /bin/sh will do: nothing can be pulled here
  for image in $(docker images --format '{{.Repository}}:{{.Tag}}' | grep -v '<none>'); do
    if docker image inspect "$image" >/dev/null 2>&1; then
      echo "$image"
      return 0
    fi
  done
  return 1
}

# privileged_works: 0 when both `run --privileged` and `exec --privileged` work
privileged_works() {
  image=$(probe_image) || { log "no local image to probe with; build one first (e.g. the TaskDB image)"; exit 2; }
  name="rbd-runc-probe-$$"
  if ! out=$(docker run -d --rm --privileged --label "$probe_label" --name "$name" --entrypoint /bin/sh "$image" -c 'sleep 60' 2>&1); then
    log "docker run --privileged fails: $(echo "$out" | tail -1)"
    docker rm -f "$name" >/dev/null 2>&1 || true
    return 1
  fi
  rc=0
  out=$(docker exec --privileged "$name" /bin/sh -c true 2>&1) || rc=$?
  docker rm -f "$name" >/dev/null 2>&1 || true
  if [ "$rc" != 0 ]; then
    log "docker exec --privileged fails: $(echo "$out" | tail -1)"
    return 1
  fi
  return 0
}

default_runtime() { docker info --format '{{.DefaultRuntime}}' 2>/dev/null; }

if privileged_works; then
  log "privileged containers work here ($(default_runtime) is the default runtime); nothing to do"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  log "privileged containers fail here; run $0 as root to install the runc wrapper"
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  log "privileged containers fail here, and installing the runc wrapper needs root"
  exit 2
fi
if [ "$(default_runtime)" = "$runtime_name" ]; then
  log "the wrapper is already the default runtime and privileged containers still fail; see above"
  exit 1
fi

real_runc=$(command -v runc || true)
[ -n "$real_runc" ] || { log "runc is not on PATH"; exit 2; }
go=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$go" ] || { log "Go is needed to build the wrapper (apt-get install golang-1.24)"; exit 2; }

log "building the wrapper (hands over to $real_runc) ..."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src/main.go" "$src/go.mod" "$work/"
(cd "$work" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n 19 "$go" build -trimpath \
  -ldflags "-s -w -X main.realRunc=$real_runc" -o "$work/runc-wrapper" .)
mkdir -p "$dest_dir"
install -m 0755 "$work/runc-wrapper" "$dest.new"
mv -f "$dest.new" "$dest"

mkdir -p /etc/docker
# Keeps what daemon.json was (a copy, or a marker that there was none) for uninstall-runc-wrapper.sh.
python3 "$here/../src/rollback_drill/toolchain/daemon_json.py" register "$daemon_json" "$runtime_name" "$dest"
log "registered $runtime_name in $daemon_json as the default runtime"

pid=$(cat /var/run/docker.pid 2>/dev/null || pgrep -o -x dockerd || true)
[ -n "$pid" ] || { log "cannot find dockerd's pid"; exit 1; }
log "asking dockerd ($pid) to reload its configuration (SIGHUP; running containers are untouched) ..."
kill -HUP "$pid"
i=0
while [ "$(default_runtime)" != "$runtime_name" ] && [ "$i" -lt 10 ]; do
  sleep 1
  i=$((i + 1))
done

if [ "$(default_runtime)" != "$runtime_name" ]; then
  log "dockerd did not pick the runtime up on reload; it must restart"
  waited=0
  while [ -n "$(docker ps -q --filter label=rollback-drill)" ]; do
    if [ "$waited" -ge 600 ]; then
      log "containers labelled rollback-drill still run after 10 minutes; restarting dockerd anyway (they will be stopped)"
      break
    fi
    [ "$waited" = 0 ] && log "waiting for running rollback-drill containers to finish before restarting dockerd ..."
    sleep 10
    waited=$((waited + 10))
  done
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 1; done
  log "restarting: $cmdline"
  # shellcheck disable=SC2086
  nohup $cmdline >/var/log/rollback-drill-dockerd.log 2>&1 &
  i=0
  until docker version >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -le 60 ] || { log "dockerd did not come back within 60s"; exit 1; }
    sleep 1
  done
fi

if privileged_works; then
  log "privileged containers work now (default runtime: $(default_runtime))"
else
  log "privileged containers still fail with the wrapper in place"
  exit 1
fi
