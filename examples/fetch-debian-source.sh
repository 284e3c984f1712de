#!/usr/bin/env bash
# Fetch the upstream sources of a Debian source package with apt (no deb-src line needed on the host):
#   examples/fetch-debian-source.sh PACKAGE[=VERSION] DEST
# Uses a private apt state under DEST/.apt with deb-src entries made from the host's own apt sources, runs
# `apt-get source --download-only`, and unpacks the upstream (orig) tarball into DEST/PACKAGE. Prints that
# directory on stdout (last line) and the version it fetched on stderr.
#
# Which version: the newest one the mirror can actually serve. A mirror may list a suite's sources without
# serving its source pool (e.g. a security suite whose pool answers 404), so when the newest candidate cannot be
# downloaded the next one is tried, newest first, and stderr says so. PACKAGE=VERSION pins one version.
# Exit status 2 means no version could be downloaded: the mirror, not the project.
set -euo pipefail
usage="usage: $0 PACKAGE[=VERSION] DEST"
spec="${1:?$usage}"
dest="${2:?$usage}"
pkg="${spec%%=*}"
pin=""
[[ "$spec" == *=* ]] && pin="${spec#*=}"
stamp="$dest/.versions/$pkg"
if [[ -d "$dest/$pkg" && -n "$(ls -A "$dest/$pkg")" && -f "$stamp" ]]; then
    if [[ -z "$pin" || "$(cat "$stamp")" == "$pin" ]]; then
        echo "fetch-debian-source: $pkg $(cat "$stamp") (already in $dest/$pkg)" >&2
        echo "$dest/$pkg"
        exit 0
    fi
fi
command -v apt-get >/dev/null || { echo "fetch-debian-source: needs apt-get (a Debian host)" >&2; exit 1; }
state="$dest/.apt"
mkdir -p "$state/lists/partial" "$state/parts" "$state/cache/archives/partial" "$state/download" "$dest/.versions"
: > "$state/empty.list"
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/*.sources > "$state/parts/src.sources"
fi
if [[ -f /etc/apt/sources.list ]]; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$state/parts/src.list"
fi
opts=(-q -o "Dir::Etc::SourceList=$state/empty.list" -o "Dir::Etc::SourceParts=$state/parts"
      -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o APT::Sandbox::User=root)
if ! apt-get "${opts[@]}" update >"$state/update.log" 2>&1; then
    echo "fetch-debian-source: 'apt-get update' against the host's Debian mirror failed (the mirror, not the project):" >&2
    tail -n 5 "$state/update.log" >&2
    exit 2
fi

# Candidate versions, newest first (dpkg's own ordering), or just the pinned one.
mapfile -t listed < <(apt-cache "${opts[@]}" showsrc --only-source "$pkg" 2>/dev/null \
    | sed -n 's/^Version: //p' | sort -u)
if [[ ${#listed[@]} -eq 0 ]]; then
    echo "fetch-debian-source: the mirror lists no source package '$pkg'" >&2
    exit 2
fi
candidates=()
for v in "${listed[@]}"; do
    i=0
    while [[ $i -lt ${#candidates[@]} ]] && dpkg --compare-versions "${candidates[$i]}" gt "$v"; do i=$((i + 1)); done
    candidates=("${candidates[@]:0:$i}" "$v" "${candidates[@]:$i}")
done
if [[ -n "$pin" ]]; then
    if ! printf '%s\n' "${candidates[@]}" | grep -qxF -- "$pin"; then
        echo "fetch-debian-source: $pkg=$pin is not listed by the mirror; it lists: ${candidates[*]}" >&2
        exit 2
    fi
    candidates=("$pin")
fi

# One download directory per package and version: DEST may hold several packages' sources, each unpacked from
# its own orig tarball.
fetched=""
tried=()
for v in "${candidates[@]}"; do
    download="$state/download/$pkg/${v//:/_}"
    rm -rf "$download"
    mkdir -p "$download"
    if (cd "$download" && apt-get "${opts[@]}" source --download-only "$pkg=$v" >"$state/source.log" 2>&1) \
        && compgen -G "$download/*.orig.tar.*" >/dev/null; then
        fetched="$v"
        break
    fi
    tried+=("$v ($(grep -m1 -oE 'Failed to fetch .* [0-9]{3} +[A-Za-z ]+' "$state/source.log" | grep -oE '[0-9]{3} +[A-Za-z ]+$' \
        | tr -s ' ' | sed 's/ *$//' || echo "download failed"))")
done
if [[ -z "$fetched" ]]; then
    echo "fetch-debian-source: no version of $pkg could be downloaded from the host's Debian mirror (the mirror, not the project); tried: ${tried[*]}" >&2
    exit 2
fi
if [[ ${#tried[@]} -gt 0 ]]; then
    echo "fetch-debian-source: $pkg $fetched (newer not downloadable: ${tried[*]})" >&2
else
    echo "fetch-debian-source: $pkg $fetched" >&2
fi
orig="$(ls "$download"/*.orig.tar.* | head -n1)"
rm -rf "$dest/$pkg"
mkdir -p "$dest/$pkg"
tar -xf "$orig" -C "$dest/$pkg" --strip-components=1
echo "$fetched" > "$stamp"
echo "$dest/$pkg"
