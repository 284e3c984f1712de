#!/usr/bin/env bash
# Collection docs with antsibull-docs, on a copy of the collection placed in
# build/docs/collections/ansible_collections/buildfarm/ec2 (as tools/test/sanity.sh does for ansible-test).
#   tools/docs/docs.sh lint    lint-collection-docs --plugin-docs: docs of modules, plugins, roles, extra docs
#   tools/docs/docs.sh build   lint, then the reference (RST) of every module/plugin/role into $DOCS_DEST
#                              (default build/docs/reference); fails on any parsing or schema error
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/.venv/bin"
COLLS="$ROOT/build/docs/collections"
DEST_COLL="$COLLS/ansible_collections/buildfarm/ec2"
DOCS_DEST="${DOCS_DEST:-$ROOT/build/docs/reference}"
# antsibull-docs runs ansible-doc / ansible-galaxy from PATH; amazon.aws (doc fragments) comes from the venv.
export PATH="$BIN:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$COLLS"
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=true

rm -rf "$DEST_COLL"
mkdir -p "$DEST_COLL"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 cp -P --parents -t "$DEST_COLL")
# lint-collection-docs copies the collection and its dependencies to a temp dir, with `git ls-files` when the
# source is inside a Git work tree: build/ and .venv/ are git-ignored, so that copy would be empty and the
# linter would silently check nothing. Without a Git repository in reach it copies the files themselves.
export GIT_DIR=/nonexistent

case "${1:-}" in
lint)
    antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs self "$DEST_COLL"
    ;;
build)
    antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs self "$DEST_COLL"
    mkdir -p "$DOCS_DEST"
    antsibull-docs collection --use-current --fail-on-error --squash-hierarchy --cleanup everything \
        --output-format simplified-rst --dest-dir "$DOCS_DEST" buildfarm.ec2
    echo "docs: reference written to $DOCS_DEST" >&2
    ;;
*)
    echo "usage: $0 lint|build" >&2
    exit 2
    ;;
esac
