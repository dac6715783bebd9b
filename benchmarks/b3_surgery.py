"""B3: surgery and on-device speed on keras.applications models.

For MobileNetV2, ResNet50, DenseNet121 and EfficientNetB0 (`weights=None`):
time `keras_guided.find_unit_groups` and `keras_guided.prune_model` at 50 %
of the units of every prunable group (lowest group norm first), the max
difference
between the pruned model and the masked original (removed units zeroed) on
random inputs, params and FLOPs ratios, and the LiteRT latency ratio
(float32, fixed threads, median of many runs) against the FLOPs ratio. For
contrast, the original with the same fraction of its weights set to zero
(unstructured, smallest magnitudes, what tfmot produces): same latency,
only gzip sees the zeros.
"""

import gzip
import json
import os
import tempfile
import time

import keras
import numpy as np

import keras_guided as kg
from benchmarks import common
from benchmarks import models as models_lib
from benchmarks import report

APPLICATIONS = ("MobileNetV2", "ResNet50", "DenseNet121", "EfficientNetB0")
CONFIGS = {
    "quick": {
        "models": ("MobileNetV2",),
        "input_size": 64,
        "latency_runs": 10,
        "num_threads": 1,
        "samples": 2,
    },
    "full": {
        "models": APPLICATIONS,
        "input_size": 224,
        "latency_runs": 50,
        "num_threads": 1,
        "samples": 4,
    },
}
REMOVE_FRACTION = 0.5
AIMS = {"ResNet50_rewrite_seconds": 5.0, "latency_over_flops_ratio": 1.15}


def _build(name, size, sample):
    """The application with random weights and BatchNormalization moving
    statistics set from `sample` (one training-mode pass with momentum 0):
    with the default statistics (mean 0, variance 1) the signal of an
    untrained deep network vanishes (outputs ~1e-12), which would make the
    verification difference meaningless."""
    keras.utils.set_random_seed(0)
    application = getattr(keras.applications, name)
    model = application(
        weights=None, input_shape=(size, size, 3), classifier_activation=None
    )
    models_lib.recalibrate_batchnorm(model, sample)
    return model


def half_plan(groups):
    """Keeps the more important half (group norm) of every prunable group."""
    scores = kg.scoring.unit_scores(groups)
    plan = {}
    for group in groups:
        if group.prunable and group.num_units > 1:
            count = int(np.ceil((1 - REMOVE_FRACTION) * group.num_units))
            order = np.argsort(-scores[group.index], kind="stable")
            plan[group.index] = np.sort(order[:count])
    return plan


def _latency(model, sample, cfg):
    """Float32 LiteRT file of `model`: bytes, gzipped bytes, latency."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.tflite")
        start = time.perf_counter()
        report = kg.export_tflite(
            model,
            path,
            verify=False,
            measure_latency=True,
            num_runs=cfg["latency_runs"],
            num_threads=cfg["num_threads"],
        )
        seconds = time.perf_counter() - start
        with open(path, "rb") as f:
            content = f.read()
    return {
        "tflite_bytes": len(content),
        "tflite_gzip_bytes": len(gzip.compress(content, 6)),
        "latency_ms": report.latency_ms,
        "export_seconds": seconds,
    }


def unstructured_zeros(model, sparsity):
    """A copy with the smallest-magnitude `sparsity` of Dense/Conv kernels
    (one global threshold) set to zero."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    kernels = [
        w
        for w in clone.weights
        if w.path.endswith("kernel") and len(w.shape) >= 2
    ]
    values = [np.abs(keras.ops.convert_to_numpy(w)).ravel() for w in kernels]
    everything = np.concatenate(values)
    count = int(sparsity * everything.size)
    if count == 0:
        return clone, 0
    cutoff = np.partition(everything, count - 1)[count - 1]
    zeros = 0
    for weight in kernels:
        value = keras.ops.convert_to_numpy(weight).copy()
        mask = np.abs(value) <= cutoff
        value[mask] = 0.0
        zeros += int(mask.sum())
        weight.assign(value)
    return clone, zeros


def masked_original(model, groups, plan):
    """A copy whose removed units (per `plan`) have every producer and
    follower slice zeroed, so they output zero after the activation."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    by_path = {w.path: w for w in clone.weights}
    for group in groups:
        kept = plan.get(group.index)
        if kept is None:
            continue
        removed = np.setdiff1d(np.arange(group.num_units), kept)
        for unit_slice in group.slices:
            if unit_slice.role not in ("producer", "follower"):
                continue
            variable = kg.units.get_weight(unit_slice.layer, unit_slice.weight)
            target = by_path[variable.path]
            value = keras.ops.convert_to_numpy(target).copy()
            axes = (
                unit_slice.axis
                if isinstance(unit_slice.axis, tuple)
                else (unit_slice.axis,)
            )
            axes = sorted(a % value.ndim for a in axes)
            rest = [a for a in range(value.ndim) if a not in axes]
            moved = np.transpose(value, axes + rest)
            flat = moved.reshape(-1, *moved.shape[len(axes) :])
            flat[unit_slice.positions[removed].ravel()] = 0.0
            moved = flat.reshape(moved.shape)
            target.assign(np.transpose(moved, np.argsort(axes + rest)))
    return clone


def run_one(name, cfg, log):
    size = cfg["input_size"]
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((8, size, size, 3)).astype("float32")
    sample = rng.standard_normal((cfg["samples"], size, size, 3)).astype(
        "float32"
    )
    model = _build(name, size, calibration)
    record = {
        "model": name,
        "input_size": size,
        "params": kg.stats.count_params(model),
        "flops": kg.stats.count_flops(model),
    }
    record.update(
        {"original_" + k: v for k, v in _latency(model, sample, cfg).items()}
    )
    reason = common.missing("find_unit_groups")
    if reason is None:
        start = time.perf_counter()
        groups = kg.find_unit_groups(model, on_unsupported="keep")
        record["groups_seconds"] = time.perf_counter() - start
        record["num_groups"] = len(groups)
        record["prunable_units"] = int(
            sum(g.num_units for g in groups if g.prunable)
        )
    reason = reason or common.missing("prune_model")
    if reason:
        record["prune_skipped"] = reason
        sparsity = REMOVE_FRACTION
    else:
        plan = half_plan(groups)
        # Zero the removed units first, so the pruned model must compute
        # exactly the masked model's function (up to float rounding).
        masked = masked_original(model, groups, plan)
        # Re-set BN statistics for the masked network (removed channels stay
        # exactly zero: their gamma and beta are zero), so its activations
        # stay normalized through 100+ layers instead of growing to 1e14.
        models_lib.recalibrate_batchnorm(masked, calibration)
        start = time.perf_counter()
        small = kg.prune_model(
            masked, plan=plan, on_unsupported="keep", verify=False
        )
        record["rewrite_seconds"] = time.perf_counter() - start
        expected = common.logits(masked, sample, 1)
        record["verification_max_abs_diff"] = float(
            np.max(np.abs(common.logits(small, sample, 1) - expected))
        )
        record["output_scale"] = float(np.max(np.abs(expected)))
        record["verification_relative_diff"] = record[
            "verification_max_abs_diff"
        ] / max(record["output_scale"], 1e-30)
        record["pruned_params"] = kg.stats.count_params(small)
        record["pruned_flops"] = kg.stats.count_flops(small)
        record["params_ratio"] = record["pruned_params"] / record["params"]
        record["flops_ratio"] = record["pruned_flops"] / record["flops"]
        record.update(
            {"pruned_" + k: v for k, v in _latency(small, sample, cfg).items()}
        )
        record["latency_ratio"] = (
            record["pruned_latency_ms"] / record["original_latency_ms"]
        )
        record["latency_over_flops_ratio"] = (
            record["latency_ratio"] / record["flops_ratio"]
        )
        sparsity = 1.0 - record["params_ratio"]
    zeroed, zeros = unstructured_zeros(model, sparsity)
    record["unstructured_sparsity"] = sparsity
    record["unstructured_zeros"] = zeros
    record.update(
        {
            "unstructured_" + k: v
            for k, v in _latency(zeroed, sample, cfg).items()
        }
    )
    record["unstructured_latency_ratio"] = (
        record["unstructured_latency_ms"] / record["original_latency_ms"]
    )
    log(
        f"B3 {name}: "
        + ", ".join(
            f"{k}={v:.3g}"
            for k, v in record.items()
            if k.endswith(("ratio", "seconds")) and isinstance(v, float)
        )
    )
    return record


def run(mode, log=print):
    cfg = CONFIGS[mode]
    records = []
    for name in cfg["models"]:
        try:
            records.append(run_one(name, cfg, log))
        except Exception as error:  # Recorded in the table, never silent.
            log(f"B3 {name} failed: {type(error).__name__}: {error}")
            records.append(
                {
                    "model": name,
                    "input_size": cfg["input_size"],
                    "error": f"{type(error).__name__}: {str(error)[:300]}",
                }
            )
    return {
        "config": cfg,
        "remove_fraction": REMOVE_FRACTION,
        "aims": AIMS,
        "models": records,
    }


# ------------------------------------------------------- latency targets
# `python -m benchmarks.b3_surgery --latency [--models mobilenetv2]`:
# for each model and quantization, a `{"latency": ASKED}` plan priced by a
# measured LiteRT table against a FLOPs plan searched (bisection on the
# measured latency) to run as fast. Resumable: every finished (model,
# quantization) row is written to the JSON at once and skipped next time;
# the tables are cached under OUT/latency_cache.
LATENCY_ASKED = 0.5
LATENCY_AIMS = {
    "measured_within": 0.10,
    "params_gain": 0.15,
    "mobilenetv2_table_seconds": 120.0,
}
_BISECTION_STEPS = 5
#: Both plans keep at least this share of every layer: with `weights=None`
#: every unit scores alike, and a plan led by cost alone would cut a stem
#: convolution to one channel, which no trained model would survive.
MIN_SHARE = 0.25


def _measure(model, quantization, cfg):
    return kg.latency.measure_latency(
        model,
        quantization=quantization,
        num_threads=cfg["num_threads"],
        num_runs=cfg["latency_runs"],
    )


def _sizes(model, reference):
    params = kg.stats.count_params(model)
    flops = kg.stats.count_flops(model)
    return {
        "params_kept": params / reference["params"],
        "flops_kept": flops / reference["flops"],
    }


def run_latency_one(name, quantization, cfg, cache_dir, log):
    size = cfg["input_size"]
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((8, size, size, 3)).astype("float32")
    model = _build(name, size, calibration)
    record = {
        "model": name,
        "quantization": quantization or "float32",
        "input_size": size,
        "asked": LATENCY_ASKED,
        "params": kg.stats.count_params(model),
        "flops": kg.stats.count_flops(model),
    }
    start = time.perf_counter()
    table = kg.build_latency_table(
        model,
        quantization=quantization,
        num_threads=cfg["num_threads"],
        cache_dir=cache_dir,
        verbose=0,
    )
    record["table_seconds"] = time.perf_counter() - start
    record["table_samples_measured"] = table.num_measured
    record["table_samples_cached"] = table.num_cached
    record["predicted_ms"] = table.total_ms
    record["measured_ms"] = _measure(model, quantization, cfg)
    log(
        f"B3 latency {name} {record['quantization']}: table "
        f"{record['table_seconds']:.0f} s, predicted "
        f"{record['predicted_ms']:.2f} ms (whole-model calibrated), "
        f"measured "
        f"{record['measured_ms']:.2f} ms"
    )
    small = kg.prune_model(
        model,
        target={"latency": LATENCY_ASKED},
        latency_table=table,
        min_units=MIN_SHARE,
        on_unsupported="keep",
        verify=False,
    )
    record["latency_plan"] = {
        "measured_ratio": _measure(small, quantization, cfg)
        / record["measured_ms"],
        **_sizes(small, record),
    }
    goal = record["latency_plan"]["measured_ratio"]
    low, high, best = 0.1, 1.0, None
    for _ in range(_BISECTION_STEPS):
        fraction = (low + high) / 2
        candidate = kg.prune_model(
            model,
            target={"flops": fraction},
            min_units=MIN_SHARE,
            on_unsupported="keep",
            verify=False,
        )
        ratio = _measure(candidate, quantization, cfg) / record["measured_ms"]
        row = {
            "flops_target": fraction,
            "measured_ratio": ratio,
            **_sizes(candidate, record),
        }
        if best is None or abs(ratio - goal) < abs(
            best["measured_ratio"] - goal
        ):
            best = row
        low, high = (fraction, high) if ratio < goal else (low, fraction)
    record["flops_plan"] = best
    record["params_gain"] = (
        record["latency_plan"]["params_kept"] / best["params_kept"] - 1.0
    )
    record["measured_vs_asked"] = (
        record["latency_plan"]["measured_ratio"] / LATENCY_ASKED - 1.0
    )
    log(
        f"B3 latency {name} {record['quantization']}: measured "
        f"{record['latency_plan']['measured_ratio']:.3f} of the original "
        f"(asked {LATENCY_ASKED}), params kept "
        f"{record['latency_plan']['params_kept']:.3f} vs "
        f"{best['params_kept']:.3f} for the FLOPs plan at "
        f"{best['measured_ratio']:.3f}"
    )
    return record


def run_latency(models, quantizations, mode, out, log=print):
    """Runs the latency-target rows missing from OUT/b3_latency.json."""

    cfg = CONFIGS[mode]
    path = os.path.join(out, "b3_latency.json")
    results = {
        "config": cfg,
        "asked": LATENCY_ASKED,
        "min_share": MIN_SHARE,
        "aims": LATENCY_AIMS,
        "machine": report.machine(),
        "rows": [],
    }
    if os.path.exists(path):
        with open(path) as f:
            results["rows"] = json.load(f)["rows"]
    done = {
        (r["model"], r["quantization"])
        for r in results["rows"]
        if "error" not in r
    }
    results["rows"] = [r for r in results["rows"] if "error" not in r]
    for name in models:
        for quantization in quantizations:
            if (name, quantization or "float32") in done:
                continue
            try:
                row = run_latency_one(
                    name,
                    quantization,
                    cfg,
                    os.path.join(out, "latency_cache"),
                    log,
                )
            except Exception as error:  # Recorded, never silent.
                log(
                    f"B3 latency {name} failed: {type(error).__name__}: {error}"
                )
                row = {
                    "model": name,
                    "quantization": quantization or "float32",
                    "error": f"{type(error).__name__}: {str(error)[:300]}",
                }
            results["rows"].append(row)
            report.write_atomic(path, json.dumps(results, indent=1))
            report.write_atomic(
                os.path.join(out, "b3_latency.md"),
                "\n".join(latency_table(results)) + "\n",
            )
    return results


def latency_table(results):
    """The latency-target rows as markdown."""
    lines = [
        f"Latency target: keep {results['asked']:.0%} of the measured "
        "LiteRT latency (batch 1, "
        f"{results['config']['num_threads']} thread(s), min of "
        f"{results['config']['latency_runs']} runs). Both plans keep at "
        f"least {results.get('min_share', MIN_SHARE):.0%} of every layer "
        "(`min_units`): with `weights=None` every unit scores alike.",
        "",
        "| model | mode | table s (measured/cached samples) | predicted / "
        "measured ms | latency plan: measured, params, FLOPs | FLOPs plan "
        "(target): measured, params, FLOPs | params gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        if "error" in r:
            lines.append(
                f"| {r['model']} | {r['quantization']} | failed: "
                f"{r['error']} | | | | |"
            )
            continue
        lat, flo = r["latency_plan"], r["flops_plan"]
        lines.append(
            f"| {r['model']} | {r['quantization']} | "
            f"{r['table_seconds']:.0f} ({r['table_samples_measured']}/"
            f"{r['table_samples_cached']}) | {r['predicted_ms']:.2f} / "
            f"{r['measured_ms']:.2f} | {lat['measured_ratio']:.3f}, "
            f"{lat['params_kept']:.3f}, {lat['flops_kept']:.3f} | "
            f"({flo['flops_target']:.3f}) {flo['measured_ratio']:.3f}, "
            f"{flo['params_kept']:.3f}, {flo['flops_kept']:.3f} | "
            f"{r['params_gain']:+.1%} |"
        )
    return lines


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.b3_surgery",
        description="B3 latency targets (the surgery rows run with "
        "`python -m benchmarks --only b3`).",
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        required=True,
        help="run the latency-target comparison",
    )
    parser.add_argument(
        "--models",
        default=",".join(APPLICATIONS),
        help="comma-separated, case-insensitive (default: all four)",
    )
    parser.add_argument(
        "--quantization",
        default="float32,int8",
        help="comma-separated: float32, int8 (default: both)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="64x64 inputs, 10 timed runs"
    )
    parser.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "results"
        ),
    )
    args = parser.parse_args(argv)
    by_name = {n.lower(): n for n in APPLICATIONS}
    models = []
    for item in args.models.split(","):
        if item.strip().lower() not in by_name:
            parser.error(
                f"--models takes {list(APPLICATIONS)}; received {item!r}"
            )
        models.append(by_name[item.strip().lower()])
    quantizations = [
        None if q.strip() == "float32" else q.strip()
        for q in args.quantization.split(",")
    ]
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()

    log = report.elapsed_log(start)

    run_latency(
        models, quantizations, "quick" if args.quick else "full", args.out, log
    )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
