"""The speedup model (module_utils/speedup.py) and its filter: predictions that reproduce the measured run, the knee,
the recommendation rule, the cost, and the builder meters the filter turns into server CPU."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.buildfarm.ec2.plugins.filter.speedup import speedup as speedup_filter
from ansible_collections.buildfarm.ec2.plugins.module_utils import speedup

# A run with 2 builders of 2 cores and a 2-core client: 300 CPU-seconds of compiling, 40 on the client, 100 s wall.
RUN = dict(wall=100.0, client_cpu=40.0, client_cores=2, server_cpu=300.0, server_cores=2, builders=2)


def test_the_model_reproduces_the_run_it_was_made_from():
    result = speedup.model(**RUN)
    fractions = result["fractions"]
    # servers: 300 / (2 * 2) = 75 s; client 40 / 2 = 20 s; the rest of the 100 s is overhead
    assert (fractions["client_seconds"], fractions["server_seconds"], fractions["overhead"]) == (20.0, 75.0, 25.0)
    assert speedup.predict(fractions, 2) == pytest.approx(100.0)
    assert {p["builders"]: p["seconds"] for p in result["curve"]}[2] == 100.0
    assert fractions["client_share"] == round(40 / 340, 3)


def test_more_builders_help_until_the_client_saturates():
    result = speedup.model(**RUN)
    # knee: 300 * 2 / (40 * 2) = 7.5 builders
    assert result["knee"] == 7.5 and result["bound"] == "servers"
    seconds = [p["seconds"] for p in result["curve"]]
    assert seconds == sorted(seconds, reverse=True)
    best = 25.0 + 20.0
    assert {p["builders"]: p["seconds"] for p in result["curve"]}[64] == best
    recommended = result["recommended"]["builders"]
    fractions = result["fractions"]
    # the smallest count within 10% of the best possible: 75*2/N + 25 <= 49.5 -> N >= 6.12
    assert recommended == 7
    assert speedup.predict(fractions, recommended) <= best * 1.1 < speedup.predict(fractions, recommended - 1)


def test_a_client_bound_run_is_told_to_use_fewer_builders():
    result = speedup.model(**{**RUN, "client_cpu": 200.0, "server_cpu": 100.0, "builders": 8})
    assert result["bound"] == "client" and result["knee"] == 0.5
    assert result["recommended"]["builders"] == 1


def test_the_predicted_cost_is_the_cluster_for_the_other_phases_and_the_build():
    result = speedup.model(**RUN, host_usd_per_hour=0.02, builder_usd_per_hour=0.1, other_seconds=60)
    point = {p["builders"]: p for p in result["curve"]}[4]
    seconds = 25.0 + max(20.0, 300 / 8)
    assert point["cost_usd"] == round((0.02 + 4 * 0.1) * (60 + seconds) / 3600, 6)
    assert speedup.model(**RUN)["recommended"]["cost_usd"] is None


@pytest.mark.parametrize(
    "missing", [dict(server_cpu=0), dict(wall=None), dict(client_cores="?"), dict(builders=0), dict(client_cpu=-1)]
)
def test_a_run_without_the_numbers_is_not_modelled(missing):
    assert speedup.model(**dict(RUN, **missing)) is None


def test_the_filter_reads_the_builders_meters():
    measured = dict(RUN)
    del measured["server_cpu"], measured["builders"]
    # two builders measured; one whose distccd restarted (backwards) counts 0; one lost (no second reading) is out
    measured["server_meters"] = [["10.00", "160.00"], ["5.5\n", "155.5\n"], ["7.0", "3.0"], ["4.0", ""]]
    result = speedup_filter(measured)
    assert (result["fractions"]["server_cpu"], result["fractions"]["builders"]) == (300.0, 3)
    with pytest.raises(AnsibleFilterError, match="unknown measurement"):
        speedup_filter(dict(RUN, cores=2))
    with pytest.raises(AnsibleFilterError, match="expects a dict"):
        speedup_filter([1, 2])
