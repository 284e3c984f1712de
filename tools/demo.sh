#!/usr/bin/env bash
# make demo: the main job on the local cloud. Starts the local cloud, fetches Lua 5.4's sources with apt,
# runs playbooks/build.yml with examples/lua/params.yml (one host, two builders, distcc), lists what landed
# in S3, and stops the local cloud again (nothing is left running).
#   DEMO_PARAMS=examples/zlib/params.yml DEMO_PACKAGE=zlib make demo     another project
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PARAMS="${DEMO_PARAMS:-examples/lua/params.yml}"
PACKAGE="${DEMO_PACKAGE:-lua5.4}"
export BUILDFARM_LOCALCLOUD_DIR="$ROOT/build/demo/localcloud"
export PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/build/collections"
export ANSIBLE_LOCALHOST_WARNING=false
# every node configured at once, as bin/buildfarm-build runs Ansible (its default is 5 at a time)
export ANSIBLE_FORKS=50

cleanup() { tools/localcloud/localcloud.sh down >/dev/null || echo "demo: 'tools/localcloud/localcloud.sh down' failed" >&2; }
trap cleanup EXIT
eval "$(tools/localcloud/localcloud.sh up)"

src="$(examples/fetch-debian-source.sh "$PACKAGE" "$ROOT/build/demo/sources")"
bucket="$(awk '/^bucket:/ {print $2}' "$PARAMS")"
python - "$bucket" <<'PYEOF'
import sys, boto3
s3 = boto3.client("s3")
if sys.argv[1] not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
    s3.create_bucket(Bucket=sys.argv[1], CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
PYEOF

ansible-playbook playbooks/build.yml -e "@$PARAMS" -e "source_dir=$src" -e "work_dir=$ROOT/build/demo/runs" \
    -e "ssh_cidr=$BUILDFARM_LOCALCLOUD_CONTROLLER_CIDR"

echo "demo: objects in s3://$bucket/"
python - "$bucket" <<'PYEOF'
import sys, boto3
for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1]):
    for obj in page.get("Contents", []):
        print("  %10d  %s" % (obj["Size"], obj["Key"]))
PYEOF
