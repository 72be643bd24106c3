#!/bin/sh
# Undo scripts/install-runc-wrapper.sh: dockerd's default runtime back to what it was, the wrapper gone.
#
# - Waits (up to 10 minutes) until no container labelled rollback-drill runs: they may use the wrapper.
# - Takes the wrapper's runtime out of /etc/docker/daemon.json and puts back the default runtime the
#   original file had (kept by the installer as daemon.json.rollback-drill.orig); a daemon.json the
#   installer created (daemon.json.rollback-drill.absent) is removed when nothing else is in it.
#   Changes made to the file since are kept (src/rollback_drill/toolchain/daemon_json.py).
# - Asks dockerd to reload (SIGHUP); if the default runtime does not change back, restarts dockerd
#   the way scripts/ensure-docker.sh starts it (dockerd --ip 127.0.0.1).
# - Removes /usr/local/libexec/rollback-drill/runc-wrapper. Idempotent: nothing installed, nothing done.
#
# usage: uninstall-runc-wrapper.sh [--dry-run] [--config FILE]
#   --config FILE: edit FILE instead of /etc/docker/daemon.json and touch neither dockerd nor the wrapper
#   --dry-run:     say what would be done, change nothing
set -eu
here=$(cd "$(dirname "$0")" && pwd)
edit="python3 $here/../src/rollback_drill/toolchain/daemon_json.py"
dest=/usr/local/libexec/rollback-drill/runc-wrapper
runtime_name=rollback-drill-runc
daemon_json=/etc/docker/daemon.json
only_config=false
dry_run=
log() { echo "[runc-wrapper] $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=--dry-run ;;
    --config) [ $# -ge 2 ] || { log "--config needs a file"; exit 2; }; daemon_json=$2; only_config=true; shift ;;
    *) log "unknown argument $1; usage: $0 [--dry-run] [--config FILE]"; exit 2 ;;
  esac
  shift
done

if $only_config; then
  # shellcheck disable=SC2086
  $edit restore "$daemon_json" "$runtime_name" $dry_run
  exit 0
fi

if [ ! -e "$daemon_json.rollback-drill.orig" ] && [ ! -e "$daemon_json.rollback-drill.absent" ] \
  && ! grep -qs "$runtime_name" "$daemon_json" && [ ! -e "$dest" ]; then
  log "the runc wrapper is not installed; nothing to do"
  exit 0
fi
if [ -n "$dry_run" ]; then
  $edit restore "$daemon_json" "$runtime_name" --dry-run
  log "would reload dockerd and remove $dest"
  exit 0
fi
[ "$(id -u)" = 0 ] || { log "restoring dockerd's configuration needs root"; exit 2; }

default_runtime() { docker info --format '{{.DefaultRuntime}}' 2>/dev/null; }

waited=0
while docker version >/dev/null 2>&1 && [ -n "$(docker ps -q --filter label=rollback-drill)" ]; do
  if [ "$waited" -ge 600 ]; then
    log "containers labelled rollback-drill still run after 10 minutes; stop them first (they may use the wrapper)"
    exit 1
  fi
  [ "$waited" = 0 ] && log "waiting for running rollback-drill containers to finish ..."
  sleep 10
  waited=$((waited + 10))
done

$edit restore "$daemon_json" "$runtime_name"

pid=$(cat /var/run/docker.pid 2>/dev/null || pgrep -o -x dockerd || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  log "asking dockerd ($pid) to reload its configuration (SIGHUP) ..."
  kill -HUP "$pid"
  i=0
  while [ "$(default_runtime)" = "$runtime_name" ] && [ "$i" -lt 10 ]; do
    sleep 1
    i=$((i + 1))
  done
  if [ "$(default_runtime)" = "$runtime_name" ]; then
    log "dockerd kept the wrapper on reload; restarting it as scripts/ensure-docker.sh starts it"
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 1; done
    for pidfile in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
      if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
        rm -f "$pidfile"
      fi
    done
    nohup dockerd --ip 127.0.0.1 >/var/log/rollback-drill-dockerd.log 2>&1 &
    i=0
    until docker version >/dev/null 2>&1; do
      i=$((i + 1))
      [ "$i" -le 60 ] || { log "dockerd did not come back within 60s; see /var/log/rollback-drill-dockerd.log"; exit 1; }
      sleep 1
    done
  fi
  log "dockerd's default runtime: $(default_runtime)"
fi

rm -f "$dest"
rmdir /usr/local/libexec/rollback-drill 2>/dev/null || true
log "the runc wrapper is removed"
