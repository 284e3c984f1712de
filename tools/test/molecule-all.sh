#!/usr/bin/env bash
# Run every molecule scenario under extensions/molecule/, MOLECULE_JOBS at a time (default 2), each with
# its own log in build/molecule/<scenario>.log; fail when any scenario fails, naming it.
#   tools/test/molecule-all.sh [scenario ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
JOBS="${MOLECULE_JOBS:-2}"
LOGS="$ROOT/build/molecule"
mkdir -p "$LOGS"

if (($#)); then
    scenarios=("$@")
else
    mapfile -t scenarios < <(find extensions/molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' \
        | xargs -n1 basename | sort)
fi
((${#scenarios[@]})) || { echo "molecule-all: no scenarios found" >&2; exit 1; }

run_one() {
    local s="$1" start rc
    start=$(date +%s)
    if molecule test -s "$s" >"$LOGS/$s.log" 2>&1; then rc=0; else rc=$?; fi
    echo "molecule-all: $s $([[ $rc == 0 ]] && echo passed || echo FAILED) in $(($(date +%s) - start)) s (log: build/molecule/$s.log)"
    if ((rc)); then tail -n 60 "$LOGS/$s.log" | sed "s/^/[$s] /"; fi
    return "$rc"
}
export -f run_one
export LOGS

printf '%s\n' "${scenarios[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
