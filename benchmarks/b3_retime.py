"""B3, re-timed: the exported files timed by a timer of their own.

`python -m benchmarks.b3_retime base.tflite pruned.tflite [...]` times
`.tflite` files interleaved (A, B, A, B, ... for `--rounds` rounds) in the
`ai_edge_litert` Interpreter with one thread, each invoke on the calling
thread's CPU clock (`time.thread_time`: with one interpreter thread the
invoke runs on the caller, and time the scheduler gave the core to other
processes is left out), and prints the median ms of every file and the
ratio of each to the first (pruned over base). The timer imports NumPy and
`ai_edge_litert` only: nothing of keras_guided's latency timer, so it is a
check of what that timer reports, not a second reading of it.

`python -m benchmarks.b3_retime --models MobileNetV2 --quantization int8
--asked 0.5,0.4 --out docs/benchmarks_b3_retime.json --docs
docs/benchmarks.md` makes the files first: the application (224 x 224,
`weights=None`, BatchNormalization statistics set from random inputs as B3
does), `prune_model(target={"latency": asked}, latency_table=...,
measure="litert")`, base and pruned written by `export_tflite` in the
asked mode (int8 calibrated on 8 random inputs), then re-timed here; the
JSON holds what the loop said and what the re-timing measured (rows of the
same model, mode and asked share replaced), and `--docs` rewrites the
page's table between its `b3retime` markers.
"""

import argparse
import json
import os
import platform
import time

import numpy as np

from benchmarks import report

ROUNDS = 21
RUNS_PER_ROUND = 10
WARMUP = 5


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    with open(path, "rb") as f:
        interpreter = Interpreter(model_content=f.read(), num_threads=1)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        shape = tuple(int(d) for d in detail["shape"])
        if np.issubdtype(detail["dtype"], np.floating):
            value = rng.standard_normal(shape).astype(detail["dtype"])
        else:
            value = np.zeros(shape, detail["dtype"])
        interpreter.set_tensor(detail["index"], value)
    for _ in range(WARMUP):
        interpreter.invoke()
    return interpreter


def retime(paths, rounds=ROUNDS, runs=RUNS_PER_ROUND):
    """Times the files at `paths` interleaved; returns a dict with every
    file's median ms (thread CPU time per invoke, all rounds), the median
    over rounds of each file's per-round median, and the ratios of each
    file to the first: of the medians, and the median of the per-round
    ratios with their spread (standard deviation over mean)."""
    interpreters = [_interpreter(path) for path in paths]
    times = [[] for _ in paths]  # per file, per round: invoke ms
    for _ in range(rounds):
        for index, interpreter in enumerate(interpreters):
            round_times = []
            for _ in range(runs):
                start = time.thread_time()
                interpreter.invoke()
                round_times.append((time.thread_time() - start) * 1000.0)
            times[index].append(round_times)
    medians = [float(np.median(np.concatenate(t))) for t in times]
    per_round = [np.median(np.array(t), axis=1) for t in times]
    files = []
    for index, path in enumerate(paths):
        ratios = per_round[index] / per_round[0]
        files.append(
            {
                "path": os.path.basename(path),
                "bytes": os.path.getsize(path),
                "median_ms": medians[index],
                "ratio": medians[index] / medians[0],
                "round_ratio_median": float(np.median(ratios)),
                "round_ratio_spread": float(np.std(ratios) / np.mean(ratios)),
            }
        )
    return {
        "clock": "time.thread_time per invoke, 1 interpreter thread",
        "rounds": rounds,
        "runs_per_round": runs,
        "files": files,
    }


def make_files(name, asked_shares, directory, quantization=None, log=print):
    """Base and pruned files of `name` at each asked share, in
    `quantization` (`None`: float32; `"int8"` calibrated on 8 random
    inputs); returns `(base_path, {asked: (pruned_path, loop record)})`."""
    import keras

    import keras_guided as kg
    from benchmarks import b3_surgery

    size = 224
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((8, size, size, 3)).astype("float32")
    model = b3_surgery._build(name, size, calibration)
    start = time.perf_counter()
    table = kg.build_latency_table(
        model,
        quantization=quantization,
        cache_dir=os.path.join(directory, "latency_cache"),
        verbose=0,
    )
    log(f"{name}: table in {time.perf_counter() - start:.0f} s")
    mode = quantization or "float32"
    settings = {"quantization": quantization}
    if quantization == "int8":
        settings["representative_data"] = calibration
    base = os.path.join(directory, f"{name}_{mode}_base.tflite")
    kg.export_tflite(model, base, **settings)
    pruned = {}
    for asked in asked_shares:
        start = time.perf_counter()
        small, report = kg.prune_model(
            model,
            target={"latency": asked},
            latency_table=table,
            measure="litert",
            min_units=b3_surgery.MIN_SHARE,
            on_unsupported="keep",
            verify=False,
            return_report=True,
        )
        check = report.latency
        record = {
            "loop_measured": check.measured,
            "loop_within": check.within,
            "loop_tries": len(check.tries),
            "loop_seconds": time.perf_counter() - start,
        }
        log(f"{name} asked {asked}: loop says {check.measured:.3f}")
        path = os.path.join(directory, f"{name}_{mode}_{asked}.tflite")
        kg.export_tflite(small, path, **settings)
        pruned[asked] = (path, record)
        keras.backend.clear_session()
    return base, pruned


BEGIN = "<!-- b3retime:begin -->"
END = "<!-- b3retime:end -->"


def _key(row):
    return (row["model"], row.get("quantization", "float32"), row["asked"])


def merge(results, rows):
    """`results` with `rows` added; a row of the same model, mode and
    asked share replaces the older one."""
    keys = {_key(row) for row in rows}
    kept = [row for row in results["models"] if _key(row) not in keys]
    results["models"] = kept + list(rows)
    return results


def table(results):
    """The page's markdown table of `results`' rows."""
    lines = [
        "| model | mode | asked | loop: measured (tries) | re-timed "
        "(independent) | within 10 % | base / pruned bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["models"]:
        base, pruned = row["retimed"]["files"]
        lines.append(
            f"| {row['model']} | {row.get('quantization', 'float32')} | "
            f"{row['asked']} | {row['loop_measured']:.3f} "
            f"({row['loop_tries']}) | {row['retimed_ratio']:.3f} | "
            f"{'yes' if row['retimed_within_10pct'] else 'no'} | "
            f"{base['bytes']:,} / {pruned['bytes']:,} |"
        )
    return "\n".join(lines)


def write_page(path, results):
    """Replaces the table between the b3retime markers of the page."""
    report.write_region(path, BEGIN, END, table(results) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help=".tflite files (base first)")
    parser.add_argument("--models", default="")
    parser.add_argument("--asked", default="0.5,0.4")
    parser.add_argument("--quantization", default="float32")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--runs", type=int, default=RUNS_PER_ROUND)
    parser.add_argument("--work", default="/tmp/b3_retime")
    parser.add_argument("--out", default=None)
    parser.add_argument("--conditions", default="")
    parser.add_argument("--docs", default=None)
    args = parser.parse_args(argv)
    if args.files:
        print(json.dumps(retime(args.files, args.rounds, args.runs), indent=1))
        return
    os.makedirs(args.work, exist_ok=True)
    asked_shares = [float(a) for a in args.asked.split(",")]
    quantization = None if args.quantization == "float32" else args.quantization
    results = {"machine": platform.machine(), "input_size": 224, "models": []}
    if args.out and os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    results.pop("quantization", None)  # now a field of every row
    for row in results["models"]:
        row.setdefault("quantization", "float32")
    command = (
        f"python -m benchmarks.b3_retime --models {{model}} --quantization "
        f"{args.quantization} --asked {args.asked}"
    )
    for name in [m for m in args.models.split(",") if m]:
        start = time.perf_counter()
        base, pruned = make_files(name, asked_shares, args.work, quantization)
        rows = []
        for asked, (path, record) in pruned.items():
            timing = retime([base, path], args.rounds, args.runs)
            ratio = timing["files"][1]["ratio"]
            rows.append(
                {
                    "model": name,
                    "quantization": args.quantization,
                    "asked": asked,
                    **record,
                    "retimed": timing,
                    "retimed_ratio": ratio,
                    "retimed_within_10pct": abs(ratio / asked - 1) <= 0.10,
                    "command": command.format(model=name),
                    "conditions": args.conditions,
                }
            )
            print(
                f"{name} {args.quantization} asked {asked}: loop "
                f"{record['loop_measured']:.3f}, re-timed {ratio:.3f} (base "
                f"{timing['files'][0]['median_ms']:.2f} ms, pruned "
                f"{timing['files'][1]['median_ms']:.2f} ms)",
                flush=True,
            )
        rows[-1]["model_seconds"] = time.perf_counter() - start
        merge(results, rows)
        if args.out:
            report.write_atomic(args.out, json.dumps(results, indent=1))
        if args.docs:
            write_page(args.docs, results)


if __name__ == "__main__":
    main()
