#!/bin/sh
# Make a Docker engine reachable for the TaskDB container.
# - If one answers already, do nothing (a user's own Docker host needs nothing from us).
# - Otherwise, as root on Debian: install docker.io and start dockerd bound to 127.0.0.1,
#   so that every published port stays on loopback.
set -eu
if docker version >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "no Docker engine is reachable; start Docker (or run this as root on Debian to have it installed), or use --taskdb local" >&2
  exit 2
fi
if ! command -v dockerd >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "no Docker engine and no apt-get: install Docker by hand" >&2; exit 2; }
  echo "[docker] installing Debian's docker.io ..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! command -v debootstrap >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  # The offline TaskDB image is built with debootstrap when postgres:15 cannot be pulled.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
# A dockerd killed with its session leaves its pid file behind, and a new one refuses to start.
for pidfile in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
    rm -f "$pidfile"
  fi
done
log=/var/log/rollback-drill-dockerd.log
echo "[docker] starting dockerd --ip 127.0.0.1 (log: $log) ..." >&2
nohup dockerd --ip 127.0.0.1 >"$log" 2>&1 &
i=0
until docker version >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 60 ]; then
    echo "dockerd did not answer within 60s; see $log:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  sleep 1
done
echo "[docker] dockerd is up" >&2
