#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection placed in build/sanity/ansible_collections/buildfarm/ec2,
# with amazon.aws beside it: ansible-test needs a real (not symlinked) tree, and makes its own virtualenvs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="$ROOT/.venv/bin/python"
DEST="$ROOT/build/sanity/ansible_collections"

# ansible-test bootstraps pip in its venvs with a script it would download; give it one built on ensurepip.
pip_version="$("$PY" - <<'PYEOF'
import re, pathlib, ansible_test
text = (pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", text).group(1))
PYEOF
)"
mkdir -p "$HOME/.ansible/test/cache"
cp "$ROOT/tools/test/get_pip_offline.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"

rm -rf "$DEST/buildfarm/ec2" "$DEST/amazon/aws"
mkdir -p "$DEST/buildfarm/ec2" "$DEST/amazon"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 cp -P --parents -t "$DEST/buildfarm/ec2")
cp -r "$("$PY" -c 'import ansible_collections.amazon.aws as m; print(list(m.__path__)[0])')" "$DEST/amazon/aws"
cd "$DEST/buildfarm/ec2"
git init -q && git add -A
exec "$ROOT/.venv/bin/ansible-test" sanity --color no --python 3.11 --venv --requirements "$@"
