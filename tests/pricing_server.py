"""A moto server with the local cloud's price fixture (tools/localcloud/localcloud/pricing.py): the Price List API
and DescribeSpotPriceHistory answer fixture prices, everything else is plain moto. One per test module; reset
before each test like tests/conftest.py's ``aws``."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest

from tests.conftest import CREDENTIALS, ROOT, _post, serve_moto

LOCALCLOUD = ROOT / "tools" / "localcloud"
sys.path.insert(0, str(LOCALCLOUD))

from localcloud import pricing as fixture  # noqa: E402  (the fixture's numbers, for exact expectations)


@pytest.fixture(scope="module")
def priced_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("priced") / "server.log"
    env = dict(os.environ, PYTHONPATH=str(LOCALCLOUD))
    yield from serve_moto([sys.executable, "-m", "localcloud.pricing", "--port"], log, env, "priced moto server")


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
