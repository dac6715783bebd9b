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
import os
import tempfile
import time

import keras
import numpy as np

import keras_guided as kg
from benchmarks import common
from benchmarks import models as models_lib

APPLICATIONS = ("MobileNetV2", "ResNet50", "DenseNet121", "EfficientNetB0")
CONFIGS = {
    "quick": {"models": ("MobileNetV2",), "input_size": 64,
              "latency_runs": 10, "num_threads": 1, "samples": 2},
    "full": {"models": APPLICATIONS, "input_size": 224,
             "latency_runs": 50, "num_threads": 1, "samples": 4},
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
    model = application(weights=None, input_shape=(size, size, 3),
                        classifier_activation=None)
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
            model, path, verify=False, measure_latency=True,
            num_runs=cfg["latency_runs"], num_threads=cfg["num_threads"])
        seconds = time.perf_counter() - start
        with open(path, "rb") as f:
            content = f.read()
    return {"tflite_bytes": len(content),
            "tflite_gzip_bytes": len(gzip.compress(content, 6)),
            "latency_ms": report.latency_ms, "export_seconds": seconds}


def unstructured_zeros(model, sparsity):
    """A copy with the smallest-magnitude `sparsity` of Dense/Conv kernels
    (one global threshold) set to zero."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    kernels = [w for w in clone.weights
               if w.path.endswith("kernel") and len(w.shape) >= 2]
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
            axes = unit_slice.axis if isinstance(unit_slice.axis, tuple) else (
                unit_slice.axis,)
            axes = sorted(a % value.ndim for a in axes)
            rest = [a for a in range(value.ndim) if a not in axes]
            moved = np.transpose(value, axes + rest)
            flat = moved.reshape(-1, *moved.shape[len(axes):])
            flat[unit_slice.positions[removed].ravel()] = 0.0
            moved = flat.reshape(moved.shape)
            target.assign(np.transpose(moved, np.argsort(axes + rest)))
    return clone


def run_one(name, cfg, log):
    size = cfg["input_size"]
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((8, size, size, 3)).astype("float32")
    sample = rng.standard_normal(
        (cfg["samples"], size, size, 3)).astype("float32")
    model = _build(name, size, calibration)
    record = {"model": name, "input_size": size,
              "params": kg.stats.count_params(model),
              "flops": kg.stats.count_flops(model)}
    record.update({"original_" + k: v
                   for k, v in _latency(model, sample, cfg).items()})
    reason = common.missing("find_unit_groups")
    if reason is None:
        start = time.perf_counter()
        groups = kg.find_unit_groups(model, on_unsupported="keep")
        record["groups_seconds"] = time.perf_counter() - start
        record["num_groups"] = len(groups)
        record["prunable_units"] = int(sum(g.num_units for g in groups
                                           if g.prunable))
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
        small = kg.prune_model(masked, plan=plan, on_unsupported="keep",
                               verify=False)
        record["rewrite_seconds"] = time.perf_counter() - start
        expected = common.logits(masked, sample, 1)
        record["verification_max_abs_diff"] = float(np.max(np.abs(
            common.logits(small, sample, 1) - expected)))
        record["output_scale"] = float(np.max(np.abs(expected)))
        record["verification_relative_diff"] = (
            record["verification_max_abs_diff"]
            / max(record["output_scale"], 1e-30))
        record["pruned_params"] = kg.stats.count_params(small)
        record["pruned_flops"] = kg.stats.count_flops(small)
        record["params_ratio"] = record["pruned_params"] / record["params"]
        record["flops_ratio"] = record["pruned_flops"] / record["flops"]
        record.update({"pruned_" + k: v
                       for k, v in _latency(small, sample, cfg).items()})
        record["latency_ratio"] = (record["pruned_latency_ms"]
                                   / record["original_latency_ms"])
        record["latency_over_flops_ratio"] = (record["latency_ratio"]
                                              / record["flops_ratio"])
        sparsity = 1.0 - record["params_ratio"]
    zeroed, zeros = unstructured_zeros(model, sparsity)
    record["unstructured_sparsity"] = sparsity
    record["unstructured_zeros"] = zeros
    record.update({"unstructured_" + k: v
                   for k, v in _latency(zeroed, sample, cfg).items()})
    record["unstructured_latency_ratio"] = (
        record["unstructured_latency_ms"] / record["original_latency_ms"])
    log(f"B3 {name}: " + ", ".join(
        f"{k}={v:.3g}" for k, v in record.items()
        if k.endswith(("ratio", "seconds")) and isinstance(v, float)))
    return record


def run(mode, log=print):
    cfg = CONFIGS[mode]
    records = []
    for name in cfg["models"]:
        try:
            records.append(run_one(name, cfg, log))
        except Exception as error:  # Recorded in the table, never silent.
            log(f"B3 {name} failed: {type(error).__name__}: {error}")
            records.append({"model": name, "input_size": cfg["input_size"],
                            "error": f"{type(error).__name__}: "
                                     f"{str(error)[:300]}"})
    return {"config": cfg, "remove_fraction": REMOVE_FRACTION, "aims": AIMS,
            "models": records}
