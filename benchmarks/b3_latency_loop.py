"""B3, latency targets held as measured: the closed loop under load.

`python -m benchmarks.b3_latency_loop [--models mobilenetv2]
[--quantization float32,int8] [--asked 0.5,0.4] [--load "..."]`

For each model (`keras.applications`, `weights=None`, 224 x 224), mode and
asked share: build (or read from OUT/latency_cache) the LiteRT table, then
`prune_model(target={"latency": asked}, latency_table=table,
measure="litert")`, which times every candidate against the base
interleaved in this process and re-aims until the measured share is within
10 % (at most `max_tries`). The loop picks the closest of its noisy
measurements, so each row also re-times the returned model against the
base with a fresh interleaved comparison (`check_rounds` rounds) and keeps
both. Resumable: every finished row goes to OUT/b3_latency_loop.json at
once and is skipped next time.

The load is made outside this script (say how with `--load`, it is stored
in the JSON): run this process pinned to one core (`taskset -c 0`) and
keep the other busy (`taskset -c 1 python -c "while True: pass"`).
"""

import json
import os
import time
import warnings

import numpy as np

import keras_guided as kg
from benchmarks import b3_surgery
from benchmarks import report

TOLERANCE = 0.10
MAX_TRIES = 5
CHECK_ROUNDS = 11
MIN_SHARE = b3_surgery.MIN_SHARE


def run_one(name, quantization, asked, cfg, cache_dir, log):
    size = cfg["input_size"]
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((8, size, size, 3)).astype("float32")
    model = b3_surgery._build(name, size, calibration)
    record = {
        "model": name,
        "quantization": quantization or "float32",
        "asked": asked,
        "input_size": size,
        "params": kg.stats.count_params(model),
        "flops": kg.stats.count_flops(model),
    }
    start, cpu = time.perf_counter(), time.process_time()
    table = kg.build_latency_table(
        model,
        quantization=quantization,
        num_threads=cfg["num_threads"],
        cache_dir=cache_dir,
        verbose=0,
    )
    record["table_seconds"] = time.perf_counter() - start
    record["table_cpu_seconds"] = time.process_time() - cpu
    record["table_samples_measured"] = table.num_measured
    record["table_samples_cached"] = table.num_cached
    record["table_ms"] = table.total_ms
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small, report = kg.prune_model(
            model,
            target={"latency": asked},
            latency_table=table,
            measure="litert",
            latency_tolerance=TOLERANCE,
            max_tries=MAX_TRIES,
            min_units=MIN_SHARE,
            on_unsupported="keep",
            verify=False,
            return_report=True,
        )
    record["loop_seconds"] = time.perf_counter() - start
    record["loop_cpu_seconds"] = time.process_time() - cpu
    record["warnings"] = [
        str(w.message)[:400]
        for w in caught
        if "latency" in str(w.message).lower()
    ]
    check = report.latency
    record["loop"] = {
        "measured": check.measured,
        "within": check.within,
        "reason": check.reason,
        "chosen": check.chosen,
        "tries": [
            vars(t)
            if hasattr(t, "__dict__")
            else {f: getattr(t, f) for f in t.__dataclass_fields__}
            for t in check.tries
        ],
    }
    timer = kg.latency.InterleavedTimer.from_table(
        table, num_rounds=CHECK_ROUNDS
    )
    comparison = timer.compare(model, small)
    record["check"] = {
        "measured": comparison.ratio,
        "spread": comparison.spread,
        "base_ms": comparison.base_ms,
        "candidate_ms": comparison.candidate_ms,
        "ratios": list(comparison.ratios),
    }
    record["check_within"] = abs(comparison.ratio / asked - 1) <= TOLERANCE
    record["params_kept"] = kg.stats.count_params(small) / record["params"]
    record["flops_kept"] = kg.stats.count_flops(small) / record["flops"]
    record["total_seconds"] = record["table_seconds"] + record["loop_seconds"]
    record["total_cpu_seconds"] = (
        record["table_cpu_seconds"] + record["loop_cpu_seconds"]
    )
    record["clock"] = timer.clock
    log(
        f"B3 loop {name} {record['quantization']} asked {asked}: loop "
        f"{check.measured:.3f} in {len(check.tries)} tries "
        f"({'within' if check.within else 'NOT within'}), check "
        f"{comparison.ratio:.3f} (spread {comparison.spread:.1%}); table "
        f"{record['table_seconds']:.0f} s + loop "
        f"{record['loop_seconds']:.0f} s"
    )
    return record


def run(models, quantizations, asked_shares, out, load, log=print):

    cfg = b3_surgery.CONFIGS["full"]
    path = os.path.join(out, "b3_latency_loop.json")
    results = {
        "config": cfg,
        "tolerance": TOLERANCE,
        "max_tries": MAX_TRIES,
        "check_rounds": CHECK_ROUNDS,
        "min_share": MIN_SHARE,
        "load": load,
        "affinity": sorted(os.sched_getaffinity(0)),
        "machine": report.machine(),
        "rows": [],
    }
    if os.path.exists(path):
        with open(path) as f:
            results["rows"] = [
                r for r in json.load(f)["rows"] if "error" not in r
            ]
    done = {
        (r["model"], r["quantization"], r["asked"]) for r in results["rows"]
    }
    for name in models:
        for quantization in quantizations:
            for asked in asked_shares:
                key = (name, quantization or "float32", asked)
                if key in done:
                    continue
                try:
                    row = run_one(
                        name,
                        quantization,
                        asked,
                        cfg,
                        os.path.join(out, "latency_cache"),
                        log,
                    )
                except Exception as error:  # Recorded, never silent.
                    log(
                        f"B3 loop {key} failed: {type(error).__name__}: {error}"
                    )
                    row = {
                        "model": name,
                        "quantization": key[1],
                        "asked": asked,
                        "error": f"{type(error).__name__}: {str(error)[:300]}",
                    }
                results["rows"].append(row)
                report.write_atomic(path, json.dumps(results, indent=1))
                report.write_atomic(
                    os.path.join(out, "b3_latency_loop.md"),
                    "\n".join(table(results)) + "\n",
                )
    return results


def table(results):
    """The rows as markdown."""
    lines = [
        "| model | mode | asked | loop: measured (tries) | re-timed "
        "(spread) | within 10 % | params, FLOPs kept | table + loop s, "
        "wall (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        if "error" in r:
            lines.append(
                f"| {r['model']} | {r['quantization']} | "
                f"{r['asked']} | failed: {r['error']} | | | | |"
            )
            continue
        loop, check = r["loop"], r["check"]
        within = (
            "yes"
            if loop["within"] and r["check_within"]
            else "loop yes, re-timed no"
            if loop["within"]
            else "no" + (f": {loop['reason']}" if loop["reason"] else "")
        )
        lines.append(
            f"| {r['model']} | {r['quantization']} | {r['asked']} | "
            f"{loop['measured']:.3f} ({len(loop['tries'])}) | "
            f"{check['measured']:.3f} ({check['spread']:.1%}) | {within} | "
            f"{r['params_kept']:.3f}, {r['flops_kept']:.3f} | "
            f"{r['table_seconds']:.0f} + {r['loop_seconds']:.0f} "
            f"({r['table_cpu_seconds']:.0f} + {r['loop_cpu_seconds']:.0f}) |"
        )
    return lines


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.b3_latency_loop"
    )
    parser.add_argument("--models", default="mobilenetv2")
    parser.add_argument("--quantization", default="float32,int8")
    parser.add_argument("--asked", default="0.5,0.4")
    parser.add_argument(
        "--load", default="", help="how the machine was loaded (stored as is)"
    )
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "results"
        ),
    )
    args = parser.parse_args(argv)
    by_name = {n.lower(): n for n in b3_surgery.APPLICATIONS}
    models = [by_name[m.strip().lower()] for m in args.models.split(",")]
    quantizations = [
        None if q.strip() == "float32" else q.strip()
        for q in args.quantization.split(",")
    ]
    asked = [float(a) for a in args.asked.split(",")]
    start = time.perf_counter()

    log = report.elapsed_log(start)

    run(models, quantizations, asked, args.out, args.load, log)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
