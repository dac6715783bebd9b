"""Prune keras.applications MobileNetV2 to a FLOPs target and export it.

Shows `keras_guided.prune_model` on a real architecture: inverted residual
blocks (the `Add` layers tie the channels of a residual chain into one unit
group), depthwise convolutions (a channel passes through them) and
BatchNormalization everywhere. The example

1. builds `keras.applications.MobileNetV2` (random weights by default, or
   the weights file you pass with `--weights`);
2. removes the least important units until only `--keep-flops` of the
   FLOPs are left (default 0.5: half), with
   `prune_model(model, target={"flops": 0.5})`;
3. exports the original and the pruned model to float32 `.tflite` with
   `keras_guided.export_tflite`, verified in the LiteRT interpreter;
4. compares parameters, FLOPs, file size and LiteRT latency.

Random weights: a network with random weights and untrained
BatchNormalization statistics (mean 0, variance 1) is degenerate (its
activations vanish or explode through 50 layers), so the example first sets
the BN statistics from one batch of random images. The inputs are random
too: the point is the cost and the latency, and that the pruned and the
exported models compute what they should (the verification diffs), not the
predictions. Pruning *live* units of a trained network changes its outputs;
train it with `keras_guided.GuidedPruning` first (see cnn_digits.py), or
fine-tune after pruning.

    python examples/mobilenet_prune_export.py --quick
    python examples/mobilenet_prune_export.py --weights mobilenet_v2.h5

Artifacts in `--out` (default `./out_mobilenet_prune_export`):
`original.tflite`, `pruned.tflite`, `pruned.keras`, `prune_report.md`.
"""

import argparse
import os
import time
import warnings

# Keep TensorFlow's C++ start-up logs out of the example's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

# Full run and `--quick` (CI smoke test: a narrow, low-resolution network).
SETTINGS = {
    "full": {"input_size": 224, "alpha": 1.0, "num_runs": 100},
    "quick": {"input_size": 96, "alpha": 0.35, "num_runs": 10},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Prune MobileNetV2 to a FLOPs target with "
        "keras_guided.prune_model, export both models to .tflite and "
        "compare size and latency."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="alpha 0.35, 96x96 inputs, few latency runs (CI smoke test)",
    )
    parser.add_argument(
        "--out",
        default="out_mobilenet_prune_export",
        help="directory for artifacts (default: ./out_mobilenet_prune_export)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="weights file for keras.applications."
        "MobileNetV2 (its alpha and input size must match),"
        " or 'imagenet' to download Keras' ImageNet weights;"
        " default: random weights",
    )
    parser.add_argument(
        "--keep-flops",
        type=float,
        default=0.5,
        help="fraction of the FLOPs to keep, in (0, 1) (default: 0.5)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="input height and width (default: 224, --quick: 96)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="MobileNetV2 width multiplier (default: 1.0, --quick: 0.35)",
    )
    parser.add_argument(
        "--num-runs",
        type=int,
        default=None,
        help="LiteRT runs for the latency median (default: 100, --quick: 10)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0.0 < args.keep_flops < 1.0:
        parser.error(
            "--keep-flops must be a fraction in (0, 1), e.g. "
            f"0.5 for half the FLOPs. Received: {args.keep_flops}"
        )
    return args


def calibrate_batchnorm(model, images):
    """Sets every BatchNormalization's moving statistics from `images`.

    One training-mode forward pass with momentum 0: each moving mean and
    variance becomes the batch statistic at that layer. Only the BN
    statistics change (no gradient step).
    """
    import keras

    layers = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def main(argv=None):
    args = parse_args(argv)
    settings = dict(SETTINGS["quick" if args.quick else "full"])
    for key in ("input_size", "alpha", "num_runs"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    start = time.perf_counter()

    def progress(message):
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", flush=True)

    import keras

    import keras_guided

    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    size, alpha = settings["input_size"], settings["alpha"]

    # 1. The network. classifier_activation=None: the model returns logits,
    # so the verification diffs below are not squashed by a softmax.
    model = keras.applications.MobileNetV2(
        input_shape=(size, size, 3),
        alpha=alpha,
        weights=args.weights,
        classifier_activation=None,
    )
    rng = np.random.default_rng(args.seed)
    images = rng.uniform(-1.0, 1.0, (16, size, size, 3)).astype("float32")
    if args.weights is None:
        calibrate_batchnorm(model, images)
    source = f"weights {args.weights}" if args.weights else "random weights"
    progress(
        f"MobileNetV2 alpha={alpha}, {size}x{size} inputs, {source}: "
        f"{keras_guided.stats.count_params(model):,} params, "
        f"{keras_guided.stats.count_flops(model):,} FLOPs per image"
    )

    # 2. Prune to the FLOPs target. `target={"flops": f}` removes the least
    # important units (smallest weight RMS, per unit group) until only a
    # fraction f of the FLOPs is left. The classifier's outputs are never
    # removed. The report compares the pruned model with the original whose
    # removed units are masked to zero, on the sample inputs: that diff is
    # ~0, the rewrite itself is exact.
    # At the image borders of a 'same'-padded convolution, the constant a
    # removed channel emits is folded only approximately (the zero padding
    # does not carry it), so the diff is small but not 0: prune_model warns
    # about it and lists where in `report.notes`. We print those instead.
    progress(f"prune_model(target={{'flops': {args.keep_flops}}}) ...")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The pruned model differs")
        pruned, report = keras_guided.prune_model(
            model,
            target={"flops": args.keep_flops},
            sample_inputs=images[:4],
            return_report=True,
        )
    summary = report.summary()
    write_text(os.path.join(args.out, "prune_report.md"), summary + "\n")
    lines = summary.splitlines()
    total = next(line for line in lines if line.startswith("| total"))
    print(lines[0])
    print(f"  {lines[1]}\n  {total}")
    print(
        f"  max |pruned - masked original| = {report.max_abs_diff:.3g} "
        f"(output scale {report.output_scale:.3g}); full table in "
        "prune_report.md"
    )
    for note in report.notes:
        print(f"  note: {note}")
    pruned.save(os.path.join(args.out, "pruned.keras"))

    # 3. Export both to float32 .tflite. Each file is run in the LiteRT
    # interpreter and compared with Keras (max |LiteRT - Keras|), then timed
    # (median of batch-1 runs, one thread).
    # Fifty layers of float32 rounding (LiteRT's XNNPACK kernels vs
    # TensorFlow's) add up to a few 1e-5 on logits of order 1, which is at
    # the default bound (1e-5 relative): allow 1e-4 relative here.
    scale = float(
        np.max(
            np.abs(
                keras.ops.convert_to_numpy(model(images[:4], training=False))
            )
        )
    )
    tolerance = 1e-4 * max(1.0, scale)
    rows = []
    for name, current in (("original", model), ("pruned", pruned)):
        progress(f"exporting {name}.tflite ...")
        export = keras_guided.export_tflite(
            current,
            os.path.join(args.out, f"{name}.tflite"),
            sample_inputs=images[:4],
            tolerance=tolerance,
            measure_latency=True,
            num_runs=settings["num_runs"],
        )
        print(export.summary())
        rows.append(
            {
                "model": name,
                "params": f"{keras_guided.stats.count_params(current):,}",
                "FLOPs": f"{keras_guided.stats.count_flops(current):,}",
                ".tflite bytes": f"{export.bytes:,}",
                "latency ms": f"{export.latency_ms:.3f}",
                "max abs LiteRT - Keras": f"{export.max_abs_diff:.2g}",
            }
        )

    # 4. Compare.
    print()
    print(keras_guided.stats.format_table(rows))
    flops = [keras_guided.stats.count_flops(m) for m in (model, pruned)]
    latency = [float(row["latency ms"]) for row in rows]
    print(
        f"FLOPs kept: {flops[1] / flops[0]:.1%}, LiteRT latency "
        f"{latency[0]:.3f} ms -> {latency[1]:.3f} ms "
        f"({latency[1] / latency[0]:.2f}x, this machine, 1 thread)"
    )
    progress(f"done; artifacts in {os.path.abspath(args.out)}")


def write_text(path, text):
    """Writes a text file atomically: a temporary file, then a rename."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


if __name__ == "__main__":
    main()
