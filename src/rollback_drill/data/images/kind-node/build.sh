#!/bin/bash
# Build a kind node image offline: no registry, no download site.
#
# usage: build.sh TAG KIND_BASE_FILES BIN_DIR KUBE_VERSION [MIRROR]
#   TAG              the node image to produce (docker tag)
#   KIND_BASE_FILES  images/base/files of the sigs.k8s.io/kind module (from the Go module proxy)
#   BIN_DIR          kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler
#                    kube-proxy etcd coredns pause (static, built locally from the Go module proxy)
#   KUBE_VERSION     e.g. v1.34.4 (written to /kind/version, which kind reads)
#   MIRROR           Debian mirror (default http://deb.debian.org/debian)
#
# What it does, mirroring kind's own images/base/Dockerfile and `kind build node-image`:
#  1. debootstrap a Debian bookworm root with systemd, containerd, runc, iptables and
#     Debian's CNI plugins; add kind's base-image files (entrypoint, units, containerd config);
#  2. install kubelet/kubeadm/kubectl into /usr/bin, write /kind/version and the default CNI
#     and storage manifests kind applies;
#  3. `docker import` tiny roots for every image `kubeadm config images list` names (plus the
#     CNI image), `docker save` them, import them into the node's containerd in a build
#     container (as kind does: containerd started by hand, `ctr images import --no-unpack`),
#     and `docker commit` that container with kind's ENTRYPOINT.
# Images and containers it creates carry the label rollback-drill-kind=build.
set -euo pipefail
tag=$1
base_files=$2
bins=$3
kube_version=$4
mirror=${5:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
label=rollback-drill-kind=build
work=$(mktemp -d)
build_ctr="rbd-kind-build-$$"
cleanup() {
  docker rm -f "$build_ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[kind-node] $(date +%T) $*" >&2; }
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }
for b in kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause; do
  [ -x "$bins/$b" ] || { echo "missing binary $bins/$b" >&2; exit 2; }
done

root=$work/root
packages=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod
packages=$packages,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,socat,ebtables
packages=$packages,containerd,runc,containernetworking-plugins,busybox-static
# The debootstrap result is kept as a tarball keyed by the package list and mirror (in
# $ROOTFS_CACHE_DIR when set), so that a change further down does not redo the download.
key=$(printf '%s %s' "$packages" "$mirror" | sha256sum | cut -c1-12)
rootfs_tar=${ROOTFS_CACHE_DIR:+$ROOTFS_CACHE_DIR/kind-node-rootfs-bookworm-$key.tar}
if [ -n "$rootfs_tar" ] && [ -f "$rootfs_tar" ]; then
  log "reusing the debootstrap root $rootfs_tar"
  mkdir -p "$root"
  tar -C "$root" -xf "$rootfs_tar"
else
  log "debootstrap bookworm (minbase + systemd, containerd, runc, iptables, CNI plugins) ..."
  nice -n 19 debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
  if [ -n "$rootfs_tar" ]; then
    mkdir -p "$ROOTFS_CACHE_DIR"
    tar -C "$root" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
  fi
fi
[ "${RBD_ROOTFS_ONLY:-}" = 1 ] && exit 0

log "adding kind's base-image files ..."
install -m 0755 "$base_files"/usr/local/bin/* "$root/usr/local/bin/"
mkdir -p "$root/kind/bin" "$root/kind/manifests" "$root/kind/images" "$root/LICENSES"
install -m 0644 "$base_files"/kind/README.txt "$root/kind/"
install -m 0755 "$base_files"/kind/bin/* "$root/kind/bin/"
install -m 0644 "$base_files"/LICENSES/* "$root/LICENSES/"
install -m 0644 "$base_files"/etc/crictl.yaml "$root/etc/"
mkdir -p "$root/etc/containerd" "$root/etc/default" "$root/etc/sysctl.d" "$root/etc/systemd/system/kubelet.service.d"
install -m 0644 "$base_files"/etc/containerd/* "$root/etc/containerd/"
install -m 0644 "$base_files"/etc/default/* "$root/etc/default/"
install -m 0644 "$base_files"/etc/sysctl.d/* "$root/etc/sysctl.d/"
install -m 0644 "$base_files"/etc/systemd/system/*.service "$base_files"/etc/systemd/system/*.slice "$root/etc/systemd/system/"
install -m 0644 "$base_files"/etc/systemd/system/kubelet.service.d/* "$root/etc/systemd/system/kubelet.service.d/"

# Hosts without CAP_SYS_RESOURCE: let containerd clamp oom_score_adj (see the script)
install -m 0755 "$here/restrict-oom-score-adj.sh" "$root/kind/bin/restrict-oom-score-adj.sh"
mkdir -p "$root/etc/systemd/system/containerd.service.d"
printf '[Service]\nExecStartPre=/kind/bin/restrict-oom-score-adj.sh\n' \
  >"$root/etc/systemd/system/containerd.service.d/10-rollback-drill.conf"

# Debian's paths where kind's files expect upstream's
ln -sf /usr/bin/containerd "$root/usr/local/bin/containerd"
ln -sf /usr/bin/ctr "$root/usr/local/bin/ctr"
ln -sf /usr/bin/containerd-shim-runc-v2 "$root/usr/local/bin/containerd-shim-runc-v2"
mkdir -p "$root/opt/cni"
rm -rf "$root/opt/cni/bin"
ln -s /usr/lib/cni "$root/opt/cni/bin"
rm -f "$root/etc/systemd/system/containerd-fuse-overlayfs.service" # rootless only; not shipped

log "configuring systemd and containerd as kind's base image does ..."
chroot "$root" /bin/bash -euc '
  find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
  rm -f /lib/systemd/system/multi-user.target.wants/*
  rm -f /etc/systemd/system/*.wants/*
  rm -f /lib/systemd/system/local-fs.target.wants/*
  rm -f /lib/systemd/system/sockets.target.wants/*udev*
  rm -f /lib/systemd/system/sockets.target.wants/*initctl*
  rm -f /lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >> /etc/systemd/journald.conf
  systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  systemctl mask systemd-binfmt.service >/dev/null 2>&1
  mkdir -p /etc/kubernetes/manifests
  ctr oci spec \
    | jq ".hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" \
    | jq "del(.process.rlimits)" > /etc/containerd/cri-base.json
  echo "" > /etc/machine-id
'
[ -s "$root/etc/containerd/cri-base.json" ] || { echo "ctr oci spec produced nothing" >&2; exit 1; }

log "installing kubelet, kubeadm, kubectl $kube_version ..."
for b in kubelet kubeadm kubectl; do install -m 0755 "$bins/$b" "$root/usr/bin/$b"; done
printf '%s' "$kube_version" >"$root/kind/version"

# The images kubeadm expects for this version; the pause image is the one containerd uses.
mapfile -t required < <(chroot "$root" kubeadm config images list --kubernetes-version "$kube_version" 2>/dev/null)
[ "${#required[@]}" -ge 6 ] || { echo "kubeadm config images list gave: ${required[*]}" >&2; exit 1; }
pause_image=
for image in "${required[@]}"; do case $image in */pause:*) pause_image=$image ;; esac; done
[ -n "$pause_image" ] || { echo "no pause image in: ${required[*]}" >&2; exit 1; }
sed -i "s|^\(\s*sandbox_image = \).*|\1\"$pause_image\"|" "$root/etc/containerd/config.toml"
grep -q "sandbox_image = \"$pause_image\"" "$root/etc/containerd/config.toml"

cni_image="rollback-drill.local/rbdnet:${kube_version}-2"
sed "s|@CNI_IMAGE@|$cni_image|" "$here/default-cni.yaml" >"$root/kind/manifests/default-cni.yaml"
install -m 0644 "$here/default-storage.yaml" "$root/kind/manifests/default-storage.yaml"

# --- the images -----------------------------------------------------------------------------
# Each is a tiny root: the static binary, /etc/passwd, /tmp, and (kube-proxy) iptables with
# the libraries it links against, copied from the node root so both speak the same backend.
mkroot() { # mkroot DIR: a skeleton
  mkdir -p "$1/etc" "$1/tmp" "$1/usr/local/bin" "$1/bin" "$1/var/run"
  chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
  printf 'hosts: files dns\n' >"$1/etc/nsswitch.conf"
}
copy_with_libs() { # copy_with_libs DEST FILE...: files from the node root, with their shared libraries
  local dest=$1; shift
  local f lib
  for f in "$@"; do
    mkdir -p "$dest$(dirname "$f")"
    cp -a "$root$f" "$dest$f"
    if [ -L "$root$f" ]; then
      f=$(chroot "$root" readlink -f "$f"); mkdir -p "$dest$(dirname "$f")"; cp -a "$root$f" "$dest$f"
    fi
    for lib in $(chroot "$root" ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
      mkdir -p "$dest$(dirname "$lib")"
      cp -L "$root$lib" "$dest$lib"
    done
  done
}
import_root() { # import_root DIR IMAGE [--change ...]...
  local dir=$1 image=$2; shift 2
  tar -C "$dir" -c . | docker import --change "LABEL $label" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$@" - "$image" >/dev/null
}

images=()
for image in "${required[@]}"; do
  name=${image##*/}; name=${name%%:*}
  dir=$work/img-$name
  mkroot "$dir"
  case $name in
    kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|etcd)
      install -m 0755 "$bins/$name" "$dir/usr/local/bin/$name"
      changes=(--change "ENTRYPOINT [\"/usr/local/bin/$name\"]")
      ;;
    coredns)
      install -m 0755 "$bins/coredns" "$dir/coredns"
      changes=(--change 'ENTRYPOINT ["/coredns"]' --change 'EXPOSE 53 53/udp')
      ;;
    pause)
      install -m 0755 "$bins/pause" "$dir/pause"
      changes=(--change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535')
      ;;
    *) echo "kubeadm wants an image this recipe does not know: $image" >&2; exit 1 ;;
  esac
  if [ "$name" = kube-proxy ]; then
    copy_with_libs "$dir" /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi /usr/sbin/conntrack \
      /usr/sbin/nft /usr/sbin/ip6tables-restore
    mkdir -p "$dir/usr/lib/x86_64-linux-gnu"
    cp -a "$root/usr/lib/x86_64-linux-gnu/xtables" "$dir/usr/lib/x86_64-linux-gnu/"
    # the match/target extensions link against more (libm for `statistic`, used by kube-proxy)
    copy_with_libs "$dir" $(cd "$root" && ls usr/lib/x86_64-linux-gnu/xtables/*.so | sed 's|^|/|')
    for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
      ln -sf xtables-nft-multi "$dir/usr/sbin/$t"
    done
    install -m 0755 "$root/bin/busybox" "$dir/bin/busybox"
    ln -sf busybox "$dir/bin/sh"
  fi
  import_root "$dir" "$image" "${changes[@]}"
  images+=("$image")
done

dir=$work/img-rbdnet
mkroot "$dir"
install -m 0755 "$root/bin/busybox" "$dir/bin/busybox"
for applet in sh ip cat sleep mv grep printf date; do ln -sf busybox "$dir/bin/$applet"; done
install -m 0755 "$bins/kubectl" "$dir/usr/local/bin/kubectl"
install -m 0755 "$here/rbdnet.sh" "$dir/usr/local/bin/rbdnet"
import_root "$dir" "$cni_image" --change 'ENTRYPOINT ["/usr/local/bin/rbdnet"]'
images+=("$cni_image")

log "saving ${#images[@]} images: ${images[*]}"
docker save "${images[@]}" >"$root/kind/images/preload.tar"
docker rmi "${images[@]}" >/dev/null || true

log "importing the node root filesystem ..."
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* "$root/var/log"/*.log
base_tag="$tag-base"
tar -C "$root" -c . | docker import --change "LABEL $label" - "$base_tag" >/dev/null
rm -rf "$root"

log "preloading the images into the node's containerd (as kind build node-image does) ..."
docker run -d --init --name "$build_ctr" --label "$label" --privileged --entrypoint /bin/sleep "$base_tag" infinity >/dev/null
docker exec "$build_ctr" bash -c 'nohup containerd >/var/log/containerd-build.log 2>&1 &'
docker exec "$build_ctr" bash -c 'for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 1; done; cat /var/log/containerd-build.log; exit 1'
docker exec "$build_ctr" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
  --all-platforms --no-unpack --digests /kind/images/preload.tar >/dev/null
docker exec "$build_ctr" ctr --namespace=k8s.io images list -q >"$work/imported"
for image in "${images[@]}"; do
  grep -qx "$image" "$work/imported" || { echo "not imported into the node's containerd: $image" >&2; cat "$work/imported" >&2; exit 1; }
done
docker exec "$build_ctr" bash -c 'pkill containerd; for i in $(seq 1 20); do pgrep -x containerd >/dev/null || exit 0; sleep 0.5; done; exit 1'
docker exec "$build_ctr" rm -rf /kind/images/preload.tar /var/log/containerd-build.log /run/containerd
docker commit "$build_ctr" "$tag-preloaded" >/dev/null
# `docker commit --change` cannot set STOPSIGNAL; a one-line build on the local image can
# (the classic builder: nothing is pulled, the base is local).
mkdir -p "$work/final"
cat >"$work/final/Dockerfile" <<DOCKERFILE
FROM $tag-preloaded
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL org.rollback-drill.kubernetes-version=$kube_version $label
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
CMD []
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$work/final" >/dev/null
docker rm -f "$build_ctr" >/dev/null
docker rmi "$tag-preloaded" "$base_tag" >/dev/null || true
log "built $tag"
echo "$tag"
