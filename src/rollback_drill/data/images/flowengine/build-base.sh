#!/bin/sh
# The FlowEngine simulator image's base, offline: a Debian bookworm root with python3,
# imported into Docker. The simulator and the Python packages it imports go on top of it
# (toolchain/flowengine_image.py), so a changed simulator does not rebuild this.
# usage: build-base.sh TAG [MIRROR]
set -eu
tag=$1
mirror=${2:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }
debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$work/root" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
chroot "$work/root" python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'
rm -rf "$work/root/var/cache/apt/archives"/*.deb "$work/root/var/lib/apt/lists"/* "$work/root/usr/share/doc" \
  "$work/root/usr/share/man" "$work/root/usr/share/locale"
tar -C "$work/root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'LABEL rollback-drill-image=flowengine-base' \
  - "$tag" >/dev/null
echo "$tag"
