"""B6 throughput: Keras' ResNet-20 train step with and without XLA.

Keras compiles the train step with XLA only where a GPU is present
(`jit_compile="auto"` is False on a CPU-only machine). This times the B6
reference's train step (ResNet-20, batch 128, SGD with the reference's
schedule, the reference's batches) under `jit_compile=False` and `True`,
interleaved (A, B, A, B, ...), each round `--steps` steps of `fit` after a
warm-up round, and prints images per second and the ratio. The B4 and B6
Keras arms choose by `benchmarks.cifar.jit_compile()`.

    PYTHONPATH=. python -m benchmarks.b6_throughput \\
        --cifar-dir ../shared/data/cifar10-jpeg \\
        --out docs/benchmarks_b6_throughput.json
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import b6_reference  # noqa: E402
from benchmarks import cifar  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import resnet_cifar  # noqa: E402


def model(jit_compile):
    keras.utils.set_random_seed(0)
    net = resnet_cifar.build("resnet20")
    net.compile(
        b6_reference.optimizer(0.1, 100, 10_000),
        b6_reference.loss(),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return net


def run(data, steps, rounds, log=print):
    settings = (False, True)
    nets = {jit: model(jit) for jit in settings}
    rates = {jit: [] for jit in settings}
    for round_index in range(rounds + 1):  # round 0 warms up (traces)
        for jit in settings:
            batches = b6_reference.one_hot_batches(
                data, 0, b6_reference.STREAM_REFERENCE, round_index
            )
            start = time.perf_counter()
            nets[jit].fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
            rate = (
                steps * b6_reference.BATCH_SIZE / (time.perf_counter() - start)
            )
            if round_index:
                rates[jit].append(rate)
            log(f"round {round_index}, XLA {jit}: {rate:.0f} images/s")
    plain, xla = (float(np.median(rates[jit])) for jit in settings)
    ratios = [b / a for a, b in zip(rates[False], rates[True])]
    return {
        "images_per_second": {"plain": plain, "xla": xla},
        "rounds": {"xla" if k else "plain": v for k, v in rates.items()},
        "ratio_median": float(np.median(ratios)),
        "steps_per_round": steps,
        "batch_size": b6_reference.BATCH_SIZE,
    }


def merge(path, result):
    """`{"runs": [...]}` of the JSON at `path` with `result` in it, in
    place of an earlier run on the same CPU model and thread setting (a
    file of one run, the earlier layout, is read as one run)."""
    runs = []
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        runs = old.get("runs", [old])

    def key(run):
        return run["machine"].get("cpu"), run.get("threads")

    runs = [r for r in runs if key(r) != key(result)]
    return {"runs": runs + [result]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar-dir", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="TensorFlow threads"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSON of runs; a run replaces the one of the same machine",
    )
    args = parser.parse_args(argv)
    cifar.set_threads(args.threads)
    data = cifar.split(cifar.load(args.cifar_dir))
    result = run(data, args.steps, args.rounds)
    result["machine"] = report.machine()
    result["threads"] = args.threads
    result["xla_chosen"] = cifar.jit_compile()
    result["command"] = report.command_line("benchmarks.b6_throughput", argv)
    if args.out:
        report.write_atomic(
            args.out, json.dumps(merge(args.out, result), indent=1) + "\n"
        )
    rate = result["images_per_second"]
    print(
        "| train step | images/s |\n|---|---|\n"
        f"| plain graph | {rate['plain']:.0f} |\n| XLA | {rate['xla']:.0f} |\n"
        f"| ratio (median over rounds) | {result['ratio_median']:.2f} |"
    )


if __name__ == "__main__":
    sys.exit(main())
