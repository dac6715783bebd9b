"""B1: compression at equal accuracy on LeNet-300-100 and LeNet-5 (+BN).

For every model and method: train on the 8,000 training digits, choose the
removal threshold on validation, remove the dead units, fine-tune (<= 5
epochs, best epoch chosen on validation), and measure units, params,
FLOPs, accuracy (trained / right after removal / fine-tuned), `.tflite`
bytes (raw and gzipped) and LiteRT latency. The headline per method is the
smallest model (seed 0, chosen on validation) within 0.5 points of the
unregularized reference; it is then rerun with every seed and reported on
test.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

import keras_guided as kg
from benchmarks import common
from benchmarks import models as models_lib

METHODS = (
    "unregularized",
    "l1",
    "group_lasso",
    "guided_l1",
    "guided_group_lasso",
    "guided_proximal",
    "guided_adaptive",
    "guided_flops",
    "tfmot",
)
DESCRIPTIONS = {
    "unregularized": "no penalty; remove the lowest-norm units (keep "
                     "fraction chosen on validation)",
    "l1": "keras.regularizers.L1 on every hidden kernel (+BN gamma/beta)",
    "group_lasso": "GuidedRegularizer(norm='group', guidance='uniform')",
    "guided_l1": "GuidedRegularizer(norm='l1', guidance='linear')",
    "guided_group_lasso": "GuidedRegularizer(norm='group', "
                          "guidance='linear')",
    "guided_proximal": "GuidedPruning(mode='proximal', guidance='linear')",
    "guided_adaptive": "GuidedPruning(mode='proximal', adapt_every=1)",
    "guided_flops": "GuidedPruning(mode='proximal', cost='flops'): "
                    "cost-aware guidance",
    "tfmot": "tfmot prune_low_magnitude (unstructured) at the parameter "
             "sparsity of the smallest guided headline",
}
# Removal thresholds, relative to the largest unit norm of each layer.
THRESHOLDS = (1e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3, 0.5)
KEEP_FRACTIONS = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05)
TOLERANCE = 0.005  # 0.5 points
THRESHOLD_SLACK = 0.0025  # removal may cost <= 0.25 points on validation

# Strength grids per model family (calibrated once on validation, see
# README); the selection within a grid is made on validation every run.
STRENGTHS = {
    "mlp": {
        "l1": (3e-5, 1e-4, 3e-4),
        "group_lasso": (3e-5, 1e-4, 3e-4),
        "guided_l1": (3e-5, 1e-4, 3e-4),
        "guided_group_lasso": (3e-5, 1e-4, 3e-4),
        "guided_proximal": (3e-2, 6e-2, 1e-1),
        "guided_adaptive": (3e-2, 6e-2, 1e-1),
        "guided_flops": (3e-2, 6e-2, 1e-1),
    },
    "cnn": {
        "l1": (1e-4, 3e-4, 1e-3),
        "group_lasso": (1e-4, 3e-4, 1e-3),
        "guided_l1": (1e-4, 3e-4, 1e-3),
        "guided_group_lasso": (1e-4, 3e-4, 1e-3),
        "guided_proximal": (3e-2, 1e-1, 3e-1),
        "guided_adaptive": (3e-2, 1e-1, 3e-1),
        "guided_flops": (3e-2, 1e-1, 3e-1),
    },
}


def _family(model_name):
    return "mlp" if model_name == "lenet300" else "cnn"


# Per mode: seeds, latency runs, and per model: epochs, fine-tune epochs
# (<= 5, best on validation), batch size, strength grid slice, keep
# fractions of the unregularized baseline, optional training-set limit.
_MLP = {"epochs": 15, "finetune_epochs": 5, "batch_size": 64,
        "grid": slice(None), "keep_fractions": KEEP_FRACTIONS,
        "train_limit": None}
_CNN = {"epochs": 4, "finetune_epochs": 3, "batch_size": 128,
        "grid": slice(1, 3), "keep_fractions": (1.0, 0.5, 0.3, 0.2, 0.1),
        "train_limit": None}
CONFIGS = {
    "toy": {  # for tests/test_benchmarks.py only
        "seeds": (0,),
        "latency_runs": 2,
        "models": {"lenet300": dict(_MLP, epochs=1, finetune_epochs=1,
                                    grid=slice(1, 2),
                                    keep_fractions=(1.0, 0.5))},
    },
    "quick": {
        "seeds": (0,),
        "latency_runs": 30,
        "models": {
            "lenet300": dict(_MLP, epochs=4, finetune_epochs=2,
                             grid=slice(1, 3), keep_fractions=(1.0, 0.3, 0.1)),
            "lenet5_bn": dict(_CNN, epochs=2, finetune_epochs=1,
                              grid=slice(2, 3), keep_fractions=(1.0, 0.3),
                              train_limit=4000),
        },
    },
    "full": {
        "seeds": (0, 1, 2),
        "latency_runs": 200,
        "models": {"lenet300": _MLP, "lenet5": _CNN, "lenet5_bn": _CNN},
    },
}


def availability():
    """`{method: reason}` for methods that cannot run yet (others absent)."""
    reasons = {}
    callback = common.missing("GuidedPruning")
    if callback:
        for method in ("guided_proximal", "guided_adaptive", "guided_flops"):
            reasons[method] = callback
    else:
        if not _adaptive_argument():
            reasons["guided_adaptive"] = (
                "keras_guided.GuidedPruning has no adaptive-guidance "
                "argument yet")
        if not common.accepts(kg.GuidedPruning, "cost"):
            reasons["guided_flops"] = (
                "keras_guided.GuidedPruning has no `cost` argument yet")
    tfmot = common.tfmot_missing()
    if tfmot:
        reasons["tfmot"] = tfmot
    return reasons


def _adaptive_argument():
    if not hasattr(kg, "GuidedPruning"):
        return None
    for name in ("adapt_every", "adaptive", "adaptive_guidance"):
        if common.accepts(kg.GuidedPruning, name):
            return name
    return None


def _regularizer(method, strength):
    if method == "l1":
        return lambda: keras.regularizers.L1(strength)
    spec = {
        "group_lasso": ("group", "uniform"),
        "guided_l1": ("l1", "linear"),
        "guided_group_lasso": ("group", "linear"),
    }.get(method)
    if spec is None:
        return None
    return lambda: kg.GuidedRegularizer(
        strength=strength, norm=spec[0], guidance=spec[1])


def _callbacks(method, strength):
    if method not in ("guided_proximal", "guided_adaptive", "guided_flops"):
        return []
    kwargs = {"strength": strength, "guidance": "linear", "mode": "proximal"}
    if method == "guided_flops":
        kwargs["cost"] = "flops"
    if method == "guided_adaptive":
        name = _adaptive_argument()
        kwargs[name] = 1 if name == "adapt_every" else True
    return [kg.GuidedPruning(**kwargs)]


def _compile(model, learning_rate=1e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def train(model_name, method, strength, seed, data, epochs, batch_size):
    """Trains one model; returns `(model, seconds)`."""
    keras.utils.set_random_seed(seed)
    model = models_lib.build(
        model_name, data["x_train"].shape[1:],
        regularizer=_regularizer(method, strength))
    _compile(model)
    start = time.perf_counter()
    model.fit(data["x_train"], data["y_train"], epochs=epochs,
              batch_size=batch_size, verbose=0,
              callbacks=_callbacks(method, strength))
    seconds = time.perf_counter() - start
    models_lib.recalibrate_batchnorm(model, data["x_train"][:2000])
    return model, seconds


def _split_accuracy(model, data):
    return {
        "val": common.accuracy(model, data["x_val"], data["y_val"]),
        "test": common.accuracy(model, data["x_test"], data["y_test"]),
    }


def remove(model, keep, model_name, data):
    """Masks, removes and cross-checks; returns `(small, record)`.

    The removed model comes from `keras_guided.prune_model` on the masked
    model when it exists, else from the benchmark's reference rebuild.
    """
    masked = models_lib.masked_copy(model, keep)
    reference = models_lib.reference_rebuild(
        masked, keep, model_name, data["x_train"].shape[1:])
    x = data["x_val"]
    masked_logits = common.logits(masked, x)
    record = {
        "reference_max_abs_diff": float(np.max(np.abs(
            common.logits(reference, x) - masked_logits))),
        "accuracy_masked": _split_accuracy(masked, data),
    }
    reason = common.missing("prune_model")
    if reason:
        record["removal"] = "benchmark reference rebuild"
        record["prune_model_skipped"] = reason
        small = reference
    else:
        # The masked model's removed units are exactly zero, so the default
        # prune_model call (dead units only) removes exactly them.
        start = time.perf_counter()
        small, report = kg.prune_model(masked, return_report=True,
                                       sample_inputs=x[:64])
        record["prune_model_seconds"] = time.perf_counter() - start
        record["removal"] = "keras_guided.prune_model"
        record["prune_model_params"] = kg.stats.count_params(small)
        record["prune_model_report_max_abs_diff"] = report.max_abs_diff
        record["prune_model_max_abs_diff"] = float(np.max(np.abs(
            common.logits(small, x) - masked_logits)))
        shapes = [tuple(w.shape) for w in small.weights]
        if shapes == [tuple(w.shape) for w in reference.weights]:
            # Fine-tune prune_model's weights in the plain (regularizer-free)
            # architecture of the same widths.
            reference.set_weights(small.get_weights())
        else:
            record["prune_model_shape_mismatch"] = True
    record["accuracy_removed"] = _split_accuracy(small, data)
    return reference, record


def finetune(small, data, epochs, batch_size):
    """Fine-tunes a copy for <= `epochs`; best epoch (0..epochs) on val."""
    model = keras.models.clone_model(small)
    model.set_weights(small.get_weights())
    _compile(model, learning_rate=3e-4)
    best = (common.accuracy(model, data["x_val"], data["y_val"]), 0,
            model.get_weights())
    history = [best[0]]
    for epoch in range(1, epochs + 1):
        model.fit(data["x_train"], data["y_train"], epochs=1,
                  batch_size=batch_size, verbose=0)
        value = common.accuracy(model, data["x_val"], data["y_val"])
        history.append(value)
        if value > best[0]:
            best = (value, epoch, model.get_weights())
    model.set_weights(best[2])
    return model, {"finetune_epochs": best[1], "finetune_val_history": history}


def _choose_threshold(model, data, trained_val):
    norms = models_lib.unit_norms(model)
    chosen = THRESHOLDS[0]
    for threshold in THRESHOLDS:
        keep = models_lib.keep_by_threshold(norms, threshold)
        masked = models_lib.masked_copy(model, keep)
        value = common.accuracy(masked, data["x_val"], data["y_val"])
        if value >= trained_val - THRESHOLD_SLACK:
            chosen = threshold
    return chosen, models_lib.keep_by_threshold(norms, chosen)


def run_point(model_name, method, setting, seed, data, cfg, cache=None):
    """Trains, removes and fine-tunes one configuration.

    `setting` is the strength, or for `"unregularized"` the keep fraction
    (one trained model per seed serves every fraction, through `cache`).
    Returns `(record, fine-tuned small model)`.
    """
    strength = 0.0 if method == "unregularized" else setting
    key = (model_name, method, strength, seed)
    if cache is not None and key in cache:
        model, seconds = cache[key]
    else:
        model, seconds = train(model_name, method, strength, seed, data,
                               cfg["epochs"], cfg["batch_size"])
        if cache is not None and method == "unregularized":
            cache[key] = (model, seconds)
    trained = _split_accuracy(model, data)
    if method == "unregularized":
        threshold = None
        keep = models_lib.keep_by_fraction(models_lib.unit_norms(model),
                                           setting)
    else:
        threshold, keep = _choose_threshold(model, data, trained["val"])
    small, record = remove(model, keep, model_name, data)
    tuned, ft_record = finetune(small, data, cfg["finetune_epochs"],
                                cfg["batch_size"])
    widths = models_lib.kept_widths(model, keep)
    record.update(ft_record)
    record.update({
        "model": model_name,
        "method": method,
        "strength": strength,
        "keep_fraction": setting if method == "unregularized" else None,
        "threshold": threshold,
        "seed": seed,
        "train_seconds": seconds,
        "widths": list(widths),
        "units_kept": int(sum(widths)),
        "units_total": int(sum(models_lib.DEFAULT_WIDTHS[model_name])),
        "params": kg.stats.count_params(small),
        "flops": kg.stats.count_flops(small),
        "params_dense": kg.stats.count_params(model),
        "flops_dense": kg.stats.count_flops(model),
        "accuracy_trained": trained,
        "accuracy_finetuned": _split_accuracy(tuned, data),
    })
    return record, tuned


def _settings(method, cfg, model_name):
    if method == "unregularized":
        return cfg["keep_fractions"]
    return STRENGTHS[_family(model_name)][method][cfg["grid"]]


def _headline(points, reference_val):
    """Smallest point within 0.5 points of the reference on validation."""
    ok = [p for p in points
          if p["accuracy_finetuned"]["val"] >= reference_val - TOLERANCE]
    if ok:
        return min(ok, key=lambda p: (p["params"], -p["accuracy_finetuned"]
                                      ["val"])), True
    return max(points, key=lambda p: p["accuracy_finetuned"]["val"]), False


def run(data, mode, log=print, methods=None):
    """Runs B1; returns a JSON-ready dict."""
    mode_cfg = CONFIGS[mode]
    skipped = availability()
    methods = [m for m in (methods or METHODS)]
    result = {"config": {
                  "seeds": list(mode_cfg["seeds"]),
                  "latency_runs": mode_cfg["latency_runs"],
                  "models": {name: {k: (str(v) if isinstance(v, slice)
                                        else v) for k, v in m.items()}
                             for name, m in mode_cfg["models"].items()}},
              "strength_grid": {
                  name: {m: list(grid[m_cfg["grid"]]) for m, grid in
                         STRENGTHS[_family(name)].items()}
                  for name, m_cfg in mode_cfg["models"].items()},
              "thresholds": list(THRESHOLDS),
              "skipped": {m: skipped[m] for m in methods if m in skipped},
              "models": {}}
    all_data = data
    for model_name, model_cfg in mode_cfg["models"].items():
        log(f"B1 {model_name}")
        cfg = dict(mode_cfg, **model_cfg)
        data = dict(all_data)
        if cfg["train_limit"]:
            data["x_train"] = data["x_train"][:cfg["train_limit"]]
            data["y_train"] = data["y_train"][:cfg["train_limit"]]
        points, headlines, tuned_models, cache = [], {}, {}, {}
        for method in methods:
            if method in skipped or method == "tfmot":
                continue
            for setting in _settings(method, cfg, model_name):
                try:
                    record, tuned = run_point(model_name, method, setting,
                                              cfg["seeds"][0], data, cfg,
                                              cache)
                except Exception as error:  # Recorded, never silent.
                    message = f"{type(error).__name__}: {str(error)[:300]}"
                    log(f"  {method} {setting:g} failed: {message}")
                    result["skipped"][f"{model_name}/{method}/{setting:g}"] = (
                        "failed: " + message)
                    continue
                points.append(record)
                tuned_models[(method, setting)] = tuned
                log(f"  {method:20s} {setting:<8g} units "
                    f"{record['units_kept']:4d} params {record['params']:7d}"
                    f" val {record['accuracy_finetuned']['val']:.4f}")
        reference = next(p for p in points if p["method"] == "unregularized"
                         and p["keep_fraction"] == 1.0)
        reference_val = reference["accuracy_finetuned"]["val"]
        for method in dict.fromkeys(p["method"] for p in points):
            mine = [p for p in points if p["method"] == method]
            best, within = _headline(mine, reference_val)
            setting = (best["keep_fraction"] if method == "unregularized"
                       else best["strength"])
            seeds = [best]
            for seed in cfg["seeds"][1:]:
                record, _ = run_point(model_name, method, setting, seed,
                                      data, cfg, cache)
                seeds.append(record)
                points.append(record)
            tuned = tuned_models[(method, setting)]
            export = common.export_sizes(tuned, data["x_val"][:32],
                                         cfg["latency_runs"])
            headlines[method] = _summarize(method, best, within, seeds,
                                           export)
            log(f"  headline {method}: {headlines[method]['params']} params,"
                f" test {headlines[method]['test_mean']:.4f}")
        if "tfmot" in methods and "tfmot" not in skipped:
            headlines["tfmot"] = run_tfmot(model_name, data, headlines, cfg,
                                           tuned_models, log)
        references = [p for p in points if p["method"] == "unregularized"
                      and p["keep_fraction"] == 1.0]
        for seed in cfg["seeds"]:
            if not any(p["seed"] == seed for p in references):
                record, _ = run_point(model_name, "unregularized", 1.0, seed,
                                      data, cfg, cache)
                points.append(record)
                references.append(record)
        reference_tests = [p["accuracy_finetuned"]["test"]
                           for p in references]
        result["models"][model_name] = {
            "train_samples": int(len(data["y_train"])),
            "reference": {
                "val": reference_val,
                "test_per_seed": reference_tests,
                "test_mean": float(np.mean(reference_tests)),
                "params": reference["params"],
                "flops": reference["flops"],
                "units": reference["units_kept"],
            },
            "points": points,
            "headlines": headlines,
        }
    return result


def _summarize(method, best, within, seeds, export):
    tests = [s["accuracy_finetuned"]["test"] for s in seeds]
    summary = {
        "method": method,
        "within_tolerance_on_val": within,
        "strength": best["strength"],
        "keep_fraction": best["keep_fraction"],
        "threshold": best["threshold"],
        "widths": best["widths"],
        "units_kept": best["units_kept"],
        "units_total": best["units_total"],
        "params": best["params"],
        "params_dense": best["params_dense"],
        "flops": best["flops"],
        "flops_dense": best["flops_dense"],
        "units_kept_per_seed": [s["units_kept"] for s in seeds],
        "params_per_seed": [s["params"] for s in seeds],
        "accuracy_trained_test": best["accuracy_trained"]["test"],
        "accuracy_masked_test": best["accuracy_masked"]["test"],
        "accuracy_removed_test": best["accuracy_removed"]["test"],
        "test_per_seed": tests,
        "test_mean": float(np.mean(tests)),
        "test_std": float(np.std(tests)),
        "val": best["accuracy_finetuned"]["val"],
        "removal": best["removal"],
    }
    summary.update(export)
    return summary


def run_tfmot(model_name, data, headlines, cfg, tuned_models, log):
    """Unstructured magnitude pruning at the sparsity of the best guided."""
    guided = [h for m, h in headlines.items()
              if m.startswith("guided") and h["within_tolerance_on_val"]]
    guided = guided or [h for m, h in headlines.items()
                        if m.startswith("guided")]
    if not guided:
        return {"skipped": "no guided headline to match the sparsity of"}
    target = min(guided, key=lambda h: h["params"])
    sparsity = 1.0 - target["params"] / target["params_dense"]
    dense = tuned_models[("unregularized", 1.0)]
    with tempfile.TemporaryDirectory() as directory:
        arrays = os.path.join(directory, "arrays.npz")
        np.savez(arrays, **{k: v for k, v in data.items()
                            if k.startswith(("x_", "y_"))},
                 **{f"weight_{i}": w for i, w in
                    enumerate(dense.get_weights())})
        request = {
            "model": model_name,
            "input_shape": list(data["x_train"].shape[1:]),
            "sparsity": sparsity,
            "matched_method": target["method"],
            "epochs": cfg["finetune_epochs"],
            "batch_size": cfg["batch_size"],
            "latency_runs": cfg["latency_runs"],
            "arrays": arrays,
            "output": os.path.join(directory, "out.json"),
        }
        request_path = os.path.join(directory, "request.json")
        with open(request_path, "w") as f:
            json.dump(request, f)
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1",
                   TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.tfmot_baseline",
             request_path], env=env, capture_output=True, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if proc.returncode != 0:
            log(proc.stderr[-2000:])
            return {"skipped": "tfmot subprocess failed: "
                               + proc.stderr.strip().splitlines()[-1]}
        with open(request["output"]) as f:
            out = json.load(f)
    out["method"] = "tfmot"
    log(f"  tfmot at sparsity {sparsity:.3f}: test {out['test_mean']:.4f}")
    return out
