"""Runs B1 in parallel worker processes and merges their JSON files.

One worker per (model, seed, method group); each trains its own copy of
the reference for its seed (set `XLA_FLAGS=--xla_gpu_deterministic_ops=true`
on a GPU so that the copies agree), writes its points as it goes, and is
stopped at `--deadline` seconds. Whatever finished is merged into `--json`
(points already there are kept, so a later run resumes).

    python -m benchmarks.b1_parallel --mnist-dir DIR --json b1.json \\
        --models lenet5,lenet5_bn --seeds 0,1,2 --groups 2 --deadline 480
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import b1_budget


def _groups(methods, count):
    groups = [methods[i::count] for i in range(count)]
    return [g for g in groups if g]


def merge(paths, into=None):
    """Merges B1 result files: points are united, references kept."""
    merged = into or {}
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            part = json.load(f)
        for key in ("mode", "config", "descriptions"):
            merged.setdefault(key, part.get(key))
        models = merged.setdefault("models", {})
        for name, entry in part.get("models", {}).items():
            target = models.setdefault(name, {"reference": {}, "points": {}})
            for seed, ref in entry.get("reference", {}).items():
                target["reference"].setdefault(seed, ref)
            target["points"].update(entry.get("points", {}))
    return merged


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b1_parallel")
    parser.add_argument("--mnist-dir", default=None)
    parser.add_argument("--models", default=",".join(b1_budget.BUDGETS))
    parser.add_argument("--methods", default=",".join(b1_budget.METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--groups", type=int, default=1, help="method groups per (model, seed)"
    )
    parser.add_argument("--deadline", type=float, default=3600)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", required=True)
    parser.add_argument(
        "--logs",
        default=None,
        help="file collecting the workers' progress lines",
    )
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    work = tempfile.mkdtemp(prefix="b1_")
    log = open(args.logs or os.devnull, "a")
    workers = []
    for model in args.models.split(","):
        for seed in args.seeds.split(","):
            for i, group in enumerate(_groups(methods, args.groups)):
                path = os.path.join(work, f"{model}_{seed}_{i}.json")
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks.b1_budget",
                    "--models",
                    model,
                    "--seeds",
                    seed,
                    "--methods",
                    ",".join(group),
                    "--json",
                    path,
                ]
                if args.mnist_dir:
                    command += ["--mnist-dir", args.mnist_dir]
                if args.quick:
                    command.append("--quick")
                workers.append(
                    (
                        path,
                        subprocess.Popen(
                            command, stdout=log, stderr=subprocess.STDOUT
                        ),
                    )
                )
    print(f"{len(workers)} workers", flush=True)
    start = time.time()
    while time.time() - start < args.deadline:
        if all(p.poll() is not None for _, p in workers):
            break
        time.sleep(2)
    for _, process in workers:
        if process.poll() is None:
            process.kill()
    existing = None
    if os.path.exists(args.json):
        with open(args.json) as f:
            existing = json.load(f)
    merged = merge([p for p, _ in workers], existing)
    b1_budget._write_json(args.json, merged)
    done = sum(len(e["points"]) for e in merged.get("models", {}).values())
    print(
        f"merged {done} points into {args.json} after "
        f"{time.time() - start:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
