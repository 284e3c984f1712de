# Copyright: (c) 2026, buildfarm.ec2 developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The speedup model of a distcc build (docs/bench-build.md): from one run's measured fractions, the build time for
other builder counts, the knee, and the builder count to recommend for the next run.

A distcc build spends its time in three places:

- the client (the build host): make, preprocessing every file it sends out, linking, compiles that stay local:
  ``client_cpu`` CPU-seconds on ``client_cores`` cores;
- the servers (the builders): compiling, ``server_cpu`` CPU-seconds on N builders of ``server_cores`` each;
- what neither covers: waiting on the network per file, the serial steps of the build (a configure step, a link
  chain): ``overhead`` seconds.

While both sides run at once the slower one sets the pace, so ``T(N) = overhead + max(client_cpu / client_cores,
server_cpu / (N * server_cores))``; one run with N0 builders that took ``wall`` seconds gives ``overhead = wall -
max(...)`` at N0 (never below 0). Builders help until the servers outpace the client: the knee is ``N* = server_cpu
* client_cores / (client_cpu * server_cores)``; beyond it only the client's share and the overhead remain, which is
what distcc's own benchmark shows (-j80 no faster than -j40: the client saturates). The recommendation is the
smallest N whose predicted time is within ``TOLERANCE`` of the best possible (N -> infinity), at most ``MAX_BUILDERS``.
What the model leaves out is said in docs/bench-build.md (local slots on the client, per-file network costs that
grow with N, a make -j that caps the parallelism)."""

from __future__ import annotations

import math

TOLERANCE = 0.10
MAX_BUILDERS = 64
CURVE = (1, 2, 4, 8, 16, 32, 64)


def _positive(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 and math.isfinite(value) else None


def predict(fractions, builders):
    """Predicted build seconds with ``builders`` builders, from ``fractions`` (the result of :func:`fractions_of`)."""
    client = fractions["client_seconds"]
    server = fractions["server_cpu"] / (builders * fractions["server_cores"])
    return fractions["overhead"] + max(client, server)


def fractions_of(wall, client_cpu, client_cores, server_cpu, server_cores, builders):
    """The measured fractions of one run, or None when the run does not give enough to model (no remote compile
    time, no build time, nothing known about the cores)."""
    wall, client_cpu = _positive(wall), _positive(client_cpu)
    client_cores, server_cpu, server_cores = _positive(client_cores), _positive(server_cpu), _positive(server_cores)
    builders = int(builders or 0)
    if None in (wall, client_cpu, client_cores, server_cpu, server_cores) or builders < 1:
        return None
    client = client_cpu / client_cores
    server = server_cpu / (builders * server_cores)
    parallel = max(client, server)
    return dict(
        wall=round(wall, 2),
        builders=builders,
        client_cpu=round(client_cpu, 2),
        client_cores=client_cores,
        client_seconds=round(client, 2),
        server_cpu=round(server_cpu, 2),
        server_cores=server_cores,
        server_seconds=round(server, 2),
        overhead=round(max(0.0, wall - parallel), 2),
        client_share=round(client_cpu / (client_cpu + server_cpu), 3),
    )


def model(
    wall,
    client_cpu,
    client_cores,
    server_cpu,
    server_cores,
    builders,
    host_usd_per_hour=None,
    builder_usd_per_hour=None,
    other_seconds=0.0,
    max_builders=MAX_BUILDERS,
):
    """The model of one run: its fractions, the predicted curve, the knee and the recommended builder count with its
    predicted build time and cost (cost: the host and N builders for ``other_seconds`` - provisioning and
    configuration - plus the predicted build). None when the run cannot be modelled."""
    fractions = fractions_of(wall, client_cpu, client_cores, server_cpu, server_cores, builders)
    if fractions is None:
        return None
    best = fractions["overhead"] + fractions["client_seconds"]
    recommended = next(
        (n for n in range(1, max_builders + 1) if predict(fractions, n) <= best * (1 + TOLERANCE)), max_builders
    )
    knee = fractions["server_cpu"] * fractions["client_cores"] / (fractions["client_cpu"] * fractions["server_cores"])

    def cost(n):
        if host_usd_per_hour is None or builder_usd_per_hour is None:
            return None
        seconds = float(other_seconds or 0.0) + predict(fractions, n)
        return round((float(host_usd_per_hour) + n * float(builder_usd_per_hour)) * seconds / 3600.0, 6)

    curve = [
        dict(builders=n, seconds=round(predict(fractions, n), 1), cost_usd=cost(n))
        for n in sorted(set(CURVE + (builders, recommended)))
        if n <= max_builders
    ]
    return dict(
        fractions=fractions,
        knee=round(knee, 2),
        bound="client" if builders >= knee else "servers",
        curve=curve,
        recommended=dict(
            builders=recommended, seconds=round(predict(fractions, recommended), 1), cost_usd=cost(recommended)
        ),
        tolerance=TOLERANCE,
    )
