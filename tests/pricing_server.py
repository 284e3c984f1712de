"""A moto server with the local cloud's price fixture (tools/localcloud/localcloud/pricing.py): the Price List API
and DescribeSpotPriceHistory answer fixture prices, everything else is plain moto. One per test module; reset
before each test like tests/conftest.py's ``aws``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from tests.conftest import CREDENTIALS, ROOT, _get, _post, free_port

LOCALCLOUD = ROOT / "tools" / "localcloud"
sys.path.insert(0, str(LOCALCLOUD))

from localcloud import pricing as fixture  # noqa: E402  (the fixture's numbers, for exact expectations)


@pytest.fixture(scope="module")
def priced_server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("priced") / "server.log"
    env = dict(os.environ, PYTHONPATH=str(LOCALCLOUD))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localcloud.pricing", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 30
    while True:
        try:
            _get(url + "/moto-api/data.json")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("priced moto server did not start: %s" % log.read_text()) from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def priced(priced_server, monkeypatch):
    """Like tests/conftest.py's ``aws``, on the priced server (region us-east-1)."""
    import boto3

    region = "us-east-1"
    _post(priced_server + "/moto-api/reset")
    env = dict(CREDENTIALS, AWS_DEFAULT_REGION=region, AWS_REGION=region, AWS_ENDPOINT_URL=priced_server)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def client(service, region=region):
        return boto3.client(service, region_name=region, endpoint_url=priced_server)

    return SimpleNamespace(endpoint=priced_server, region=region, env=env, client=client, fixture=fixture)
