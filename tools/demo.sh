#!/usr/bin/env bash
# make demo: the main job on the local cloud. Until playbooks/build.yml exists this runs the largest real
# piece that does: a moto endpoint on loopback, a tagged cluster network made with boto3, and
# buildfarm.ec2.cluster_info listing exactly that cluster through ansible-playbook.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
exec .venv/bin/pytest -q -p no:cacheprovider tests/integration/test_cluster_info.py
