#!/usr/bin/env bash
# Fetch the upstream sources of a Debian source package with apt (no deb-src line needed on the host):
#   examples/fetch-debian-source.sh PACKAGE DEST
# Uses a private apt state under DEST/.apt with deb-src entries made from the host's own apt sources, runs
# `apt-get source --download-only`, and unpacks the upstream (orig) tarball into DEST/PACKAGE.
set -euo pipefail
pkg="${1:?usage: $0 PACKAGE DEST}"
dest="${2:?usage: $0 PACKAGE DEST}"
if [[ -d "$dest/$pkg" && -n "$(ls -A "$dest/$pkg")" ]]; then echo "$dest/$pkg"; exit 0; fi
command -v apt-get >/dev/null || { echo "fetch-debian-source: needs apt-get (a Debian host)" >&2; exit 1; }
state="$dest/.apt"
mkdir -p "$state/lists/partial" "$state/parts" "$state/cache/archives/partial" "$state/download"
: > "$state/empty.list"
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/*.sources > "$state/parts/src.sources"
fi
if [[ -f /etc/apt/sources.list ]]; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$state/parts/src.list"
fi
opts=(-q -o "Dir::Etc::SourceList=$state/empty.list" -o "Dir::Etc::SourceParts=$state/parts"
      -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o APT::Sandbox::User=root)
apt-get "${opts[@]}" update >/dev/null
# One download directory per package: DEST may hold several packages' sources, each unpacked from its own
# orig tarball.
download="$state/download/$pkg"
mkdir -p "$download"
(cd "$download" && apt-get "${opts[@]}" source --download-only "$pkg" >/dev/null)
orig="$(ls "$download"/*.orig.tar.* | head -n1)"
mkdir -p "$dest/$pkg"
tar -xf "$orig" -C "$dest/$pkg" --strip-components=1
echo "$dest/$pkg"
