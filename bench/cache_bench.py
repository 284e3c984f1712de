"""Benchmark (not a test): build.yml's compile cache on the local cloud, side by side in one run.

Lua (examples/fetch-debian-source.sh lua5.4) built by build.yml on fresh clusters (1 host + 2 builders, each run
its own cluster, so nothing but the S3 archive carries a cache from one run to the next), per round:

1. ``off``: no compile cache (the reference);
2. ``cold``: compile_cache=readwrite with a prefix no run used yet (every compile a miss; the archive is saved);
3. ``warm``: the same prefix, the same sources, a fresh cluster (the unchanged rebuild);
4. ``one file``: the same prefix, one source file changed (a function appended to src/lapi.c).

The build's time is the build script's wall time (report ``build.wall_seconds``: ``make -j``, compiles and links),
the cache's numbers are the report's ``compile_cache`` (hits, misses, archive bytes). Medians over the rounds; the
cold/off and warm/cold ratios are the targets of the "Fast repeated builds" issue (cold with the cache at most 5%
slower than off; warm hit rate >= 95% and at least 3x faster).

    .venv/bin/python bench/cache_bench.py --rounds 1 --out docs/bench-cache.md
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the collection as Ansible sees it (make collection), for build_bench's import of it
sys.path[:0] = [str(HERE), str(HERE.parent / "build" / "collections")]
from build_bench import ROOT, aws_client, bake, build_yml, cloud_up, lua_sources, sweep, write_report  # noqa: E402

LOCALCLOUD = ROOT / "tools" / "localcloud" / "localcloud.sh"
SCRIPT = '#!/bin/bash\nset -e\nmake -j"$BUILDFARM_JOBS" CC="$CC" linux\ncp src/lua "$BUILDFARM_OUTPUT_DIR/"\n'
VARIANTS = ["off", "cold", "warm", "one file"]


def run(env, work, sources, cluster, net, **extra):
    seconds, report, _start, _end = build_yml(
        env,
        work,
        dict(
            cluster=cluster,
            builders=2,
            vpc_cidr="10.%d.0.0/16" % net,
            subnet_cidr="10.%d.0.0/24" % net,
            source_dir=str(sources),
            build_script_content=SCRIPT,
            outputs=["lua"],
            prefix="bench/%s/" % cluster,
            **extra,
        ),
    )
    cache = report.get("compile_cache") or {}
    return {
        "wall": float(report["build"]["wall_seconds"]),
        "run": seconds,
        "hits": cache.get("hits"),
        "misses": cache.get("misses"),
        "archive": cache.get("saved_bytes") or cache.get("restored_bytes") or 0,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baked", action="store_true", help="bake an image first, boot it (image_id auto)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    state = work / "cloud"
    state.mkdir()
    fetched = lua_sources()
    clean, changed = work / "lua", work / "lua-changed"
    shutil.copytree(fetched, clean)
    shutil.copytree(fetched, changed)
    with open(changed / "src" / "lapi.c", "a") as handle:
        # code, not a comment: the preprocessed file changes (a comment alone is a preprocessed-mode hit)
        handle.write("\nint buildfarm_bench_changed(void) { return 42; }\n")
    env = cloud_up(state)
    results = {v: [] for v in VARIANTS}
    try:
        aws_client(env, "s3").create_bucket(
            Bucket="bench-build", CreateBucketConfiguration={"LocationConstraint": env["AWS_REGION"]}
        )
        baked = bake(env, work) if args.baked else None
        for r in range(args.rounds):
            prefix = "cache-bench-%d/" % r
            plan = [
                ("off", clean, dict(compile_cache="off")),
                ("cold", clean, dict(compile_cache="readwrite", compile_cache_prefix=prefix)),
                ("warm", clean, dict(compile_cache="readwrite", compile_cache_prefix=prefix)),
                ("one file", changed, dict(compile_cache="readwrite", compile_cache_prefix=prefix)),
            ]
            # the machine's load drifts over a run: the reference goes first in even rounds, last in odd ones (cold,
            # warm and one file keep their order: each needs the archive of the one before)
            order = list(enumerate(plan))
            if r % 2:
                order = order[1:] + order[:1]
            for i, (variant, sources, extra) in order:
                cluster = "bench-cache-%d-%d" % (r, i)
                try:
                    results[variant].append(run(env, work, sources, cluster, 121 + i, **extra))
                finally:
                    sweep(env, work, cluster)
                print(variant, results[variant][-1], flush=True)
    finally:
        subprocess.run(
            [str(LOCALCLOUD), "down"], env=dict(env, BUILDFARM_LOCALCLOUD_DIR=str(state)), check=False, timeout=600
        )

    def med(variant, key):
        values = [x[key] for x in results[variant] if x[key] is not None]
        return statistics.median(values) if values else None

    off, cold, warm = med("off", "wall"), med("cold", "wall"), med("warm", "wall")
    lines = [
        "# Compile cache: Lua on the local cloud (bench/cache_bench.py)",
        "",
        "Run %s UTC, %d round(s), fresh 1+2 c6i.large clusters (%s), one local cloud; medians."
        % (
            datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            args.rounds,
            "plain base image" if baked is None else "the image bake.yml baked in %.0f s, image_id auto" % baked,
        ),
        "The build time is the build script's wall time (make -j, every compile and the links).",
        "",
        "| variant | build s | hits | misses | hit rate | archive MiB | whole run s |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        hits, misses = med(variant, "hits"), med(variant, "misses")
        rate = "%.0f%%" % (100.0 * hits / (hits + misses)) if hits is not None and hits + misses else "-"
        lines.append(
            "| %s | %.1f | %s | %s | %s | %.1f | %.0f |"
            % (
                variant,
                med(variant, "wall"),
                "-" if hits is None else int(hits),
                "-" if misses is None else int(misses),
                rate,
                (med(variant, "archive") or 0) / 1048576,
                med(variant, "run"),
            )
        )
    lines += [
        "",
        "- cold with the cache / off: **%.2fx** (target <= 1.05)" % (cold / off),
        "- cold / warm (unchanged rebuild on a fresh cluster): **%.2fx** (target >= 3)" % (cold / warm),
        "",
        "What this does not show: the local cloud's S3 is on this machine, so the archive's transfer is nearly free;",
        "on EC2 it adds its size over the instance's S3 bandwidth to each run. sccache: bench/cache_compare.py.",
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
