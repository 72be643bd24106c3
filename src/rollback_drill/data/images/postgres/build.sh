#!/bin/sh
# Build the TaskDB image offline: a Debian bookworm root filesystem with postgresql-15,
# imported into Docker. Used when postgres:15 cannot be pulled.
# usage: build.sh TAG [MIRROR]
set -eu
tag=$1
mirror=${2:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }
debootstrap --variant=minbase --include=postgresql-15 bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2; exit 1; }
install -m 0755 "$here/entrypoint.sh" "$work/root/usr/local/bin/docker-entrypoint.sh"
mkdir -p "$work/root/var/lib/postgresql/data" "$work/root/var/run/postgresql"
chroot "$work/root" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
rm -rf "$work/root/var/cache/apt/archives"/*.deb "$work/root/var/lib/apt/lists"/*
tar -C "$work/root" -c . | docker import \
  --change 'USER postgres' \
  --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PGDATA=/var/lib/postgresql/data' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'EXPOSE 5432' \
  --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
  - "$tag" >/dev/null
echo "$tag"
