#!/bin/sh
# Make bubblewrap present, so that `rollback-drill conformance` runs the runbook's commands in
# namespaces of their own (a read-only host, a private /tmp, /root and /home hidden, as nobody).
# - If bwrap is installed already, do nothing.
# - Otherwise, as root on Debian: apt-get install bubblewrap. Elsewhere, say so: conformance then
#   falls back to its PATH allowlist alone.
set -eu
if command -v bwrap >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "bubblewrap is missing; run this as root on Debian to have it installed (apt-get install bubblewrap)" >&2
  exit 2
fi
command -v apt-get >/dev/null 2>&1 || { echo "bubblewrap is missing, and no apt-get: install it by hand" >&2; exit 2; }
echo "[bubblewrap] installing Debian's bubblewrap ..." >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
command -v bwrap >/dev/null 2>&1 || { echo "bubblewrap was installed but bwrap is not on PATH" >&2; exit 1; }
