#!/bin/sh
# Make Prometheus, Alertmanager, promtool and amtool present for the drill's monitoring chain.
# - If all four are installed already, do nothing.
# - Otherwise, as root on Debian: install Debian's prometheus and prometheus-alertmanager without
#   their recommends (no node exporter), and never leave them running as services: the drill starts
#   its own instances on 127.0.0.1 with its own configuration, and a packaged daemon would listen on
#   every interface (:9090, :9093, :9094).
set -eu
binaries="/usr/bin/prometheus /usr/bin/prometheus-alertmanager /usr/bin/promtool /usr/bin/amtool"
missing=""
for binary in $binaries; do
  [ -x "$binary" ] || missing="$missing $binary"
done
if [ -z "$missing" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing:$missing; run this as root on Debian to have them installed (apt-get install --no-install-recommends prometheus prometheus-alertmanager)" >&2
  exit 2
fi
command -v apt-get >/dev/null 2>&1 || { echo "missing:$missing, and no apt-get: install Prometheus and Alertmanager by hand" >&2; exit 2; }

# A policy-rc.d that answers 101 tells invoke-rc.d (and deb-systemd-invoke) not to start anything the
# packages install; one that exists already is the machine owner's and is left alone.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { [ -z "$own_policy" ] || rm -f "$policy"; }
trap cleanup EXIT INT TERM

echo "[monitoring] installing Debian's prometheus and prometheus-alertmanager ..." >&2
# Another apt on the same machine holds the lock for a while; wait for it instead of failing.
apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
  prometheus prometheus-alertmanager >/dev/null

# Whatever the init system, leave no packaged daemon running or enabled.
for service in prometheus prometheus-alertmanager; do
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  elif [ -x "/etc/init.d/$service" ]; then
    "/etc/init.d/$service" stop >/dev/null 2>&1 || true
    update-rc.d "$service" disable >/dev/null 2>&1 || true
  fi
done

for binary in $binaries; do
  [ -x "$binary" ] || { echo "[monitoring] $binary is still missing after the install" >&2; exit 1; }
done
if command -v ss >/dev/null 2>&1; then
  exposed=$(ss -ltnpH 2>/dev/null | awk '$4 !~ /^(127\.|\[::1\]|\[::ffff:127\.)/' | grep -E '"(prometheus|prometheus-alert)' || true)
  if [ -n "$exposed" ]; then
    echo "[monitoring] a packaged Prometheus or Alertmanager is listening beyond loopback; stop it:" >&2
    echo "$exposed" >&2
    exit 1
  fi
fi
echo "[monitoring] $(/usr/bin/prometheus --version 2>&1 | head -1)" >&2
echo "[monitoring] $(/usr/bin/prometheus-alertmanager --version 2>&1 | head -1)" >&2
