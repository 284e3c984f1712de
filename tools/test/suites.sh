#!/usr/bin/env bash
# make test's container suites: molecule beside integration, then e2e.
#   tools/test/suites.sh
# Molecule's scenario networks (192.168.110-130.0/24, extensions/molecule/*/molecule.yml) and the local clouds' (10.x,
# tests/networks.py) never overlap, neither binds a fixed port, and each half mostly waits on containers and package
# installs: they share only the docker engine. e2e comes after both: its bake fixture uses networks 10.86 and 10.87,
# which integration tests use too, and its fault cases (lease lapse, budget) are the ones a loaded machine would skew.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTEST="$ROOT/.venv/bin/pytest"
LOG="$ROOT/build/molecule-all.log"
mkdir -p "$ROOT/build"

# molecule in a process group of its own, so an interrupted run stops all of it (xargs and its scenarios)
setsid tools/test/molecule-all.sh > "$LOG" 2>&1 &
molecule=$!
trap 'kill -- -"$molecule" 2>/dev/null || true' EXIT INT TERM

started=$(date +%s)
integration=0
"$PYTEST" -n 2 --dist loadfile --durations=15 tests/integration || integration=$?
echo "suites: integration $([[ $integration == 0 ]] && echo passed || echo FAILED) in $(($(date +%s) - started)) s"
molecule_rc=0
wait "$molecule" || molecule_rc=$?
trap - EXIT INT TERM
echo "suites: molecule (beside integration) $([[ $molecule_rc == 0 ]] && echo passed || echo FAILED), done after $(($(date +%s) - started)) s:"
cat "$LOG"
if ((integration || molecule_rc)); then
    echo "suites: FAILED:$( ((integration)) && echo ' integration')$( ((molecule_rc)) && echo ' molecule')" >&2
    exit 1
fi

started=$(date +%s)
e2e=0
"$PYTEST" -n 2 --dist load --durations=0 tests/e2e || e2e=$?
echo "suites: e2e $([[ $e2e == 0 ]] && echo passed || echo FAILED) in $(($(date +%s) - started)) s"
exit "$e2e"
