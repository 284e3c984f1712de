#!/usr/bin/env bash
# Container engine and base image for buildfarm.ec2's tests, molecule and the local cloud.
#
#   tools/engine/engine.sh up      install docker.io + debootstrap (+ chromium for the tests) if needed, start
#                                  dockerd, build the image
#   tools/engine/engine.sh image   only (re)build the base image if it is missing or from another recipe
#   tools/engine/engine.sh check   exit 0 when the engine answers and the image is current
#
# Idempotent: with the engine running and the image present it returns in well under a second.
# The base image (BUILDFARM_BASE_IMAGE, default buildfarm/base:bookworm) is Debian bookworm with systemd,
# sshd, python3, sudo, iproute2, curl and ca-certificates, plus user `admin` with passwordless sudo (as on
# Debian AMIs). It comes from `debian:bookworm` where a registry answers, otherwise from debootstrap using
# the Debian mirror named in this host's apt sources.
set -euo pipefail

IMAGE="${BUILDFARM_BASE_IMAGE:-buildfarm/base:bookworm}"
ROOTFS_IMAGE="buildfarm/rootfs:bookworm"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACKAGES="systemd,systemd-sysv,openssh-server,python3,sudo,iproute2,curl,ca-certificates,procps,less"
LOG="${BUILDFARM_ENGINE_LOG:-/var/log/buildfarm-dockerd.log}"

die() { echo "engine.sh: error: $*" >&2; exit 1; }
say() { echo "engine.sh: $*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

debian_mirror() {
    # The first Debian archive URI of the host's apt sources (deb822 or one-line format).
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)"
    fi
    if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
        uri="$(awk '/^deb / && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' \
            /etc/apt/sources.list)"
    fi
    [[ -n "$uri" ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d/*.sources}"
    echo "$uri"
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    # Headless Chromium: the tests open the status dashboards in a real browser (molecule distcc, e2e).
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    ((${#missing[@]})) || return 0
    [[ $(id -u) -eq 0 ]] || die "need root to install ${missing[*]} (run as root or install them first)"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${missing[*]} by hand on this host"
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_engine() {
    engine_answers && return 0
    install_packages
    [[ $(id -u) -eq 0 ]] || die "docker engine not running and not root: start dockerd first"
    command -v dockerd >/dev/null 2>&1 || die "dockerd not found after install"
    say "starting dockerd (log: $LOG)"
    setsid dockerd >"$LOG" 2>&1 < /dev/null &
    for _ in $(seq 60); do
        engine_answers && return 0
        sleep 1
    done
    tail -20 "$LOG" >&2 || true
    die "dockerd did not answer within 60 s"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# An image is current when its buildfarm.recipe label matches the recipe it would be built from now: a
# changed Dockerfile or package list rebuilds it instead of silently testing against the old one.
image_label() { docker image inspect -f '{{index .Config.Labels "buildfarm.recipe"}}' "$1" 2>/dev/null || true; }
rootfs_recipe() { printf 'bookworm minbase %s\n' "$PACKAGES" | sha256sum | cut -c1-16; }
image_recipe() { { cat "$HERE/Dockerfile"; rootfs_recipe; } | sha256sum | cut -c1-16; }
image_current() { image_exists "$1" && [[ "$(image_label "$1")" == "$2" ]]; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
drop_replaced() {  # the image a rebuild replaced ($1: its id, $2: its tag), unless something still uses it
    [[ -n "$1" && "$1" != "$(image_id "$2")" ]] && docker image rm "$1" >/dev/null 2>&1 || true
}

build_rootfs() {
    # rootfs image: debian:bookworm from a registry when one answers, else debootstrap + docker import.
    local recipe
    recipe="$(rootfs_recipe)"
    image_current "$ROOTFS_IMAGE" "$recipe" && return 0
    if timeout 60 docker pull -q debian:bookworm >/dev/null 2>&1; then
        # The Dockerfile installs the packages into a registry image.
        echo "FROM debian:bookworm" | docker build -q -t "$ROOTFS_IMAGE" --label "buildfarm.recipe=$recipe" - >/dev/null
        echo registry
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 || install_packages
    local dir mirror
    mirror="$(debian_mirror)"
    dir="$(mktemp -d /var/tmp/buildfarm-rootfs.XXXXXX)"
    trap 'rm -rf "$dir"' RETURN
    say "debootstrap bookworm from the host's Debian mirror (about a minute)"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$dir" "$mirror" >/var/tmp/buildfarm-debootstrap.log 2>&1 \
        || { tail -20 /var/tmp/buildfarm-debootstrap.log >&2; die "debootstrap failed"; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb
    tar -C "$dir" -c . | docker import --change "LABEL buildfarm.recipe=$recipe" - "$ROOTFS_IMAGE" >/dev/null
    echo debootstrap
}

build_image() {
    local recipe origin old old_rootfs
    recipe="$(image_recipe)"
    image_current "$IMAGE" "$recipe" && return 0
    old="$(image_id "$IMAGE")"
    old_rootfs="$(image_id "$ROOTFS_IMAGE")"
    [[ -z "$old" ]] || say "$IMAGE was built from another recipe (Dockerfile or packages changed): rebuilding"
    origin="$(build_rootfs)"
    say "building $IMAGE (rootfs from ${origin:-cache})"
    docker build -q -t "$IMAGE" --label "buildfarm.recipe=$recipe" --build-arg BASE="$ROOTFS_IMAGE" \
        --build-arg PACKAGES="${PACKAGES//,/ }" "$HERE" >/dev/null
    drop_replaced "$old" "$IMAGE"
    drop_replaced "$old_rootfs" "$ROOTFS_IMAGE"  # after its child, the old base image
}

case "${1:-up}" in
    up) start_engine; build_image ;;
    image) engine_answers || die "docker engine not running: run '$0 up'"; build_image ;;
    check) engine_answers && image_current "$IMAGE" "$(image_recipe)" ;;
    mirror) debian_mirror ;;
    *) die "usage: $0 up|image|check|mirror" ;;
esac
