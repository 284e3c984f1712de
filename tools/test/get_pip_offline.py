"""Stand-in for ansible-test's pip bootstrap script, which it would download from a host we cannot reach.

ansible-test runs ``python get_pip.py --disable-pip-version-check pip==X [--no-setuptools] [--no-wheel]``
inside a fresh virtualenv made with ``--without-pip``. The same result comes from the standard library's
ensurepip followed by an ordinary ``pip install`` from the configured package index.
"""

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q"] + args))
