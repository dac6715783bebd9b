"""B1: accuracy at matched budgets (Pareto points), every method treated alike.

Protocol, per model and seed:

1. train the unregularized *reference* for `ref_epochs` (shared by every
   method: it is the starting point and the distillation teacher);
2. each method gets the same `prune_epochs` starting from the reference
   weights, ends at the budget (units for LeNet-300-100, FLOPs for the
   CNNs), and the dead units are removed with `keras_guided.prune_model`;
3. every method gets the same fine-tuning: `finetune_epochs` of
   distillation from the reference (`keras_guided.Distiller`, cosine
   learning rate). Test accuracy is read once, at the end.

Methods (`METHODS`): one-shot and iterative magnitude pruning of the
unregularized network (Li et al., 2017), L1, uniform group lasso and guided
(linear, adaptive) group lasso under the same budget controller
(`GuidedPruning(target=...)`), and network slimming (L1 on BN gamma, Liu et
al., 2017) on the BN model.

Run directly for a partial, resumable run (results are written after every
point and points already in the JSON are skipped):

    python -m benchmarks.b1_budget --mnist-dir ../shared/data/mnist-t10k \\
        --models lenet300 --seeds 0,1,2 --json benchmarks/results/b1.json
"""

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_guided as kg  # noqa: E402
from benchmarks import models as models_lib  # noqa: E402
from benchmarks import report  # noqa: E402

METHODS = (
    "magnitude",
    "magnitude_iterative",
    "l1",
    "slimming",
    "group_lasso",
    "guided_linear",
    "guided_adaptive",
    "guided",
    "tfmot",
)
DESCRIPTIONS = {
    "magnitude": "unregularized reference, one-shot cut to the budget by "
    "unit norm (relative to the layer's largest, one global "
    "threshold), then the pruning epochs spent training",
    "magnitude_iterative": "unregularized reference cut by unit norm in 4 "
    "steps along the cubic path, training between "
    "cuts (Li et al., 2017)",
    "l1": "keras.regularizers.L1(1e-4) on every hidden kernel (+BN gamma/"
    "beta) during the pruning epochs, then cut to the budget by unit "
    "norm",
    "slimming": "network slimming: L1(1e-4) on BN gamma during the pruning "
    "epochs, then cut by |gamma| with one global threshold (BN "
    "model only)",
    "group_lasso": "GuidedPruning(target=budget, guidance='uniform'): plain "
    "group lasso under the same budget controller",
    "guided_linear": "GuidedPruning(target=budget, guidance='linear'): "
    "the paper's index prior",
    "guided_adaptive": "GuidedPruning(target=budget, guidance='linear', "
    "adapt_every=1): linear coefficients re-assigned by "
    "importance rank every epoch",
    "tfmot": "tensorflow-model-optimization prune_low_magnitude "
    "(unstructured, tf_keras, own process) from the reference at "
    "the parameter sparsity of the guided point, for contrast: "
    "zeros, no unit removed, FLOPs unchanged",
    "guided": "GuidedPruning(target=budget): the recipe's default, "
    "importance-ranked, budget-aware guidance (coefficient 0 for "
    "the units the budget keeps)",
}
BUDGETS = {
    "lenet300": [{"units": 100}, {"units": 66}, {"units": 50}],
    "lenet5": [{"flops": 0.25}, {"flops": 0.1}, {"flops": 0.05}],
    "lenet5_bn": [{"flops": 0.25}, {"flops": 0.1}, {"flops": 0.05}],
}
CONFIG = {
    "full": {
        "mlp": {"ref_epochs": 20, "prune_epochs": 20, "finetune_epochs": 10},
        "cnn": {"ref_epochs": 12, "prune_epochs": 12, "finetune_epochs": 6},
        "seeds": [0, 1, 2],
    },
    "toy": {
        "mlp": {"ref_epochs": 1, "prune_epochs": 2, "finetune_epochs": 1},
        "cnn": {"ref_epochs": 1, "prune_epochs": 2, "finetune_epochs": 1},
        "seeds": [0],
    },
    "quick": {
        "mlp": {"ref_epochs": 2, "prune_epochs": 3, "finetune_epochs": 1},
        "cnn": {"ref_epochs": 2, "prune_epochs": 3, "finetune_epochs": 1},
        "seeds": [0],
    },
}
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
TOLERANCE = 0.5  # points


def budget_key(budget):
    ((metric, amount),) = budget.items()
    if metric == "flops":
        return f"flops/{round(1 / amount)}x"
    return f"{metric}={amount}"


def _family(model_name):
    return "mlp" if model_name == "lenet300" else "cnn"


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _compile(model, learning_rate=LEARNING_RATE):
    model.compile(
        keras.optimizers.Adam(learning_rate), _loss(), metrics=["accuracy"]
    )
    return model


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def _copy(model, regularizer=None, gamma_regularizer=None):
    """A copy of `model` with the same weights (and, optionally,
    regularizers on the hidden kernels / BN gammas)."""

    def clone(layer):
        config = layer.get_config()
        hidden = layer.name != "output"
        if (
            regularizer is not None
            and hidden
            and "kernel_regularizer" in (config)
        ):
            config["kernel_regularizer"] = keras.regularizers.serialize(
                regularizer()
            )
        if isinstance(layer, keras.layers.BatchNormalization):
            reg = gamma_regularizer or regularizer
            if reg is not None:
                config["gamma_regularizer"] = keras.regularizers.serialize(
                    reg()
                )
            if regularizer is not None:
                config["beta_regularizer"] = keras.regularizers.serialize(
                    regularizer()
                )
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _fit(model, data, epochs, callbacks=None):
    if epochs <= 0:
        return None
    return model.fit(
        data["x_train"],
        data["y_train"],
        epochs=epochs,
        batch_size=BATCH_SIZE,
        verbose=0,
        callbacks=callbacks or [],
    )


class _KeepBest(keras.callbacks.Callback):
    """Keeps the student's weights of the epoch (0 = before fine-tuning)
    with the best validation accuracy."""

    def __init__(self, student, data):
        super().__init__()
        self.student, self.data = student, data
        self.best = accuracy(student, data["x_val"], data["y_val"])
        self.best_epoch = 0
        self.weights = student.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        value = accuracy(self.student, self.data["x_val"], self.data["y_val"])
        if value > self.best:
            self.best, self.best_epoch = value, epoch + 1
            self.weights = self.student.get_weights()


def distill(student, teacher, data, epochs):
    """The common fine-tuning: distillation with a cosine learning rate;
    the number of epochs kept (0..epochs) is chosen on validation."""
    if epochs <= 0:
        return student, 0
    steps = epochs * math.ceil(len(data["y_train"]) / BATCH_SIZE)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    distiller = kg.Distiller(student, teacher, alpha=0.1, temperature=4.0)
    distiller.compile(
        keras.optimizers.Adam(schedule), _loss(), metrics=["accuracy"]
    )
    keep = _KeepBest(student, data)
    distiller.fit(
        data["x_train"],
        data["y_train"],
        epochs=epochs,
        batch_size=BATCH_SIZE,
        verbose=0,
        callbacks=[keep],
    )
    student.set_weights(keep.weights)
    return student, keep.best_epoch


def _widths_metric(model, widths, metric):
    """The metric of `model`'s architecture at hidden `widths`."""
    if metric == "units":
        return int(sum(widths))
    built = models_lib.build(model.name, model.input_shape[1:], widths=widths)
    if metric == "params":
        return kg.stats.count_params(built)
    return kg.stats.count_flops(built)


def _cut_by_scores(model, scores, budget):
    """Zeroes the units whose score is under one global threshold, the
    highest threshold that meets the budget (at least one unit per layer),
    and removes them with `prune_model`.

    `scores`: `{layer name: per-unit scores}` for the prunable layers.
    """
    ((metric, amount),) = budget.items()
    pairs = models_lib.prunable_layers(model)
    start = _measure(model, metric)
    goal = amount * start if isinstance(amount, float) else amount
    values = np.sort(np.concatenate([scores[l.name] for l, _ in pairs]))

    def keeps(threshold):
        out = []
        for layer, _ in pairs:
            keep = scores[layer.name] > threshold
            if not keep.any():
                keep[np.argmax(scores[layer.name])] = True
            out.append(keep)
        return out

    def value(threshold):
        return _widths_metric(
            model, [int(k.sum()) for k in keeps(threshold)], metric
        )

    low, high = 0, len(values) - 1
    while low < high:  # the lowest threshold that meets the goal
        middle = (low + high) // 2
        if value(values[middle]) <= goal:
            high = middle
        else:
            low = middle + 1
    threshold = values[low] if value(values[low]) <= goal else values[-1]
    masked = _copy(model)
    for (mlayer, mbn), keep in zip(
        models_lib.prunable_layers(masked), keeps(threshold)
    ):
        weights = [mlayer.kernel] + ([mlayer.bias] if mlayer.use_bias else [])
        if mbn is not None:
            weights += [mbn.gamma, mbn.beta]
        for weight in weights:
            array = keras.ops.convert_to_numpy(weight).copy()
            array[..., ~keep] = 0.0
            weight.assign(array)
    return kg.prune_model(masked)


def _norm_scores(model):
    """Per layer: unit norms relative to the layer's largest (the norm
    criterion of Li et al., 2017, comparable across layers)."""
    norms = models_lib.unit_norms(model)
    return {name: n / max(float(n.max()), 1e-12) for name, n in norms.items()}


def _cut_by_gamma(model, budget):
    """Network slimming's cut: one global |gamma| threshold over the BN
    channels (layers without BN are not cut)."""
    scores = {}
    for (layer, bn), size in zip(
        models_lib.prunable_layers(model), _widths(model)
    ):
        scores[layer.name] = (
            np.full(size, np.inf)
            if bn is None
            else np.abs(keras.ops.convert_to_numpy(bn.gamma))
        )
    return _cut_by_scores(model, scores, budget)


def run_method(method, model_name, reference, budget, data, cfg):
    """Pruning phase of one method from the reference weights; returns the
    pruned (not yet fine-tuned) model and what the phase reports."""
    epochs = cfg["prune_epochs"]
    info = {}
    if method == "magnitude":
        small = _cut_by_scores(reference, _norm_scores(reference), budget)
        _compile(small)
        _fit(small, data, epochs)  # the pruning epochs, spent fine-tuning
        return small, info
    if method == "magnitude_iterative":
        ((metric, amount),) = budget.items()
        start = _measure(reference, metric)
        goal = amount * start if isinstance(amount, float) else amount
        model = reference
        steps = 4
        for i in range(1, steps + 1):
            planned = kg.budget.planned_value(start, goal, i / steps)
            current = _measure(model, metric)
            fraction = min(1.0, planned / current)
            if fraction < 1.0:
                model = _cut_by_scores(
                    model, _norm_scores(model), {metric: fraction}
                )
            _compile(model)
            _fit(model, data, epochs // steps + (i <= epochs % steps))
        return model, info
    if method in ("l1", "slimming"):
        if method == "slimming" and model_name != "lenet5_bn":
            raise _NotApplicable("network slimming needs BatchNormalization")
        if method == "l1":
            model = _copy(
                reference, regularizer=lambda: keras.regularizers.L1(1e-4)
            )
        else:
            model = _copy(
                reference, gamma_regularizer=lambda: keras.regularizers.L1(1e-4)
            )
        _compile(model)
        _fit(model, data, epochs)
        if method == "slimming":
            return _cut_by_gamma(model, budget), info
        return _cut_by_scores(model, _norm_scores(model), budget), info
    kwargs = {}
    if method == "group_lasso":
        kwargs["guidance"] = "uniform"
    elif method in ("guided_linear", "guided_adaptive"):
        kwargs["guidance"] = "linear"
    if method == "guided_adaptive":
        kwargs["adapt_every"] = 1
    if "flops" in budget and method != "guided":
        kwargs["cost"] = "flops"
    model = _compile(_copy(reference))
    pruning = kg.GuidedPruning(target=budget, **kwargs)
    history = _fit(model, data, epochs, [pruning])
    report = dict(pruning.budget_report)
    report.pop("trace", None)
    info["controller"] = report
    info["live_units_per_epoch"] = [
        int(v) for v in history.history["live_units"]
    ]
    return kg.prune_model(model), info


class _NotApplicable(Exception):
    pass


def _widths(model):
    """Units or filters of every hidden Dense/Conv layer, in order."""
    return [
        int(layer.units if hasattr(layer, "units") else layer.filters)
        for layer, _ in models_lib.prunable_layers(model)
    ]


def _measure(model, metric):
    if metric == "units":
        return sum(_widths(model))
    if metric == "params":
        return kg.stats.count_params(model)
    return kg.stats.count_flops(model)


def run_tfmot(model_name, reference, data, cfg, guided_point):
    """tfmot at the parameter sparsity of `guided_point` (its own process:
    tfmot needs tf_keras and breaks Keras 3 where it is imported)."""
    import subprocess
    import tempfile

    from benchmarks import common

    missing = common.tfmot_missing()
    if missing:
        raise _NotApplicable(missing)
    if not guided_point or "params" not in guided_point:
        raise _NotApplicable("no guided point to match the sparsity of")
    dense = kg.stats.count_params(reference)
    sparsity = 1.0 - guided_point["params"] / dense
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        arrays = os.path.join(directory, "arrays.npz")
        np.savez(
            arrays,
            **{k: v for k, v in data.items() if k.startswith(("x_", "y_"))},
            **{f"weight_{i}": w for i, w in enumerate(reference.get_weights())},
        )
        request = {
            "model": model_name,
            "input_shape": list(data["x_train"].shape[1:]),
            "sparsity": sparsity,
            "matched_method": "guided",
            "epochs": cfg["prune_epochs"] + cfg["finetune_epochs"],
            "batch_size": BATCH_SIZE,
            "latency_runs": 50,
            "arrays": arrays,
            "output": os.path.join(directory, "out.json"),
        }
        request_path = os.path.join(directory, "request.json")
        with open(request_path, "w") as f:
            json.dump(request, f)
        env = dict(
            os.environ,
            TF_USE_LEGACY_KERAS="1",
            TF_CPP_MIN_LOG_LEVEL="3",
            KERAS_BACKEND="tensorflow",
        )
        process = subprocess.run(
            [sys.executable, "-m", "benchmarks.tfmot_baseline", request_path],
            env=env,
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        if process.returncode != 0:
            lines = process.stderr.strip().splitlines() or ["no output"]
            raise _NotApplicable("tfmot process failed: " + lines[-1])
        with open(request["output"]) as f:
            out = json.load(f)
    return {
        "units": _measure(reference, "units"),
        "widths": None,
        "params": out["params"],
        "params_nonzero": out["params_nonzero"],
        "flops": kg.stats.count_flops(reference),
        "val": out["val"],
        "test": out["test_mean"],
        "tflite_bytes": out["tflite_bytes"],
        "tflite_gzip_bytes": out["tflite_gzip_bytes"],
        "seconds": time.perf_counter() - start,
    }


def run_point(
    method, model_name, reference, budget, data, cfg, seed, guided_point=None
):
    keras.utils.set_random_seed(1000 + seed)
    if method == "tfmot":
        return run_tfmot(model_name, reference, data, cfg, guided_point)
    start = time.perf_counter()
    small, info = run_method(method, model_name, reference, budget, data, cfg)
    pruned_val = accuracy(small, data["x_val"], data["y_val"])
    _, finetune_epochs = distill(small, reference, data, cfg["finetune_epochs"])
    widths = _widths(small)
    return {
        "widths": widths,
        "units": int(sum(widths)),
        "params": kg.stats.count_params(small),
        "flops": kg.stats.count_flops(small),
        "val_after_pruning_phase": pruned_val,
        "val": accuracy(small, data["x_val"], data["y_val"]),
        "test": accuracy(small, data["x_test"], data["y_test"]),
        "finetune_epochs_chosen": finetune_epochs,
        "seconds": time.perf_counter() - start,
        **info,
    }


def run(
    data,
    mode="full",
    log=print,
    methods=None,
    models=None,
    seeds=None,
    path=None,
    results=None,
    budgets=None,
):
    """Runs (or resumes) B1 and returns its results dict.

    `path`: a JSON file written after every point; points already in it
    (or in `results`) are not run again.
    """
    cfg_all = CONFIG[mode]
    methods = list(methods or METHODS)
    models = list(models or BUDGETS)
    seeds = list(cfg_all["seeds"] if seeds is None else seeds)
    if results is None and path and os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    results = results or {}
    results.setdefault("mode", mode)
    results.setdefault("config", {k: v for k, v in cfg_all.items()})
    results.setdefault("descriptions", DESCRIPTIONS)
    block = results.setdefault("models", {})
    for model_name in models:
        cfg = cfg_all[_family(model_name)]
        entry = block.setdefault(model_name, {"reference": {}, "points": {}})
        for seed in seeds:
            todo = [
                (method, budget)
                for budget in BUDGETS[model_name]
                if budgets is None or budget_key(budget) in budgets
                for method in methods
                if f"{method}|{budget_key(budget)}|{seed}"
                not in entry["points"]
            ]
            if not todo and str(seed) in entry["reference"]:
                continue
            keras.utils.set_random_seed(seed)
            reference = _compile(
                models_lib.build(model_name, data["x_train"].shape[1:])
            )
            _fit(reference, data, cfg["ref_epochs"])
            entry["reference"][str(seed)] = {
                "val": accuracy(reference, data["x_val"], data["y_val"]),
                "test": accuracy(reference, data["x_test"], data["y_test"]),
                "units": _measure(reference, "units"),
                "params": kg.stats.count_params(reference),
                "flops": kg.stats.count_flops(reference),
            }
            log(
                f"B1 {model_name} seed {seed}: reference test "
                f"{entry['reference'][str(seed)]['test']:.4f}"
            )
            for method, budget in todo:
                key = f"{method}|{budget_key(budget)}|{seed}"
                guided_point = entry["points"].get(
                    f"guided|{budget_key(budget)}|{seed}"
                )
                try:
                    point = run_point(
                        method,
                        model_name,
                        reference,
                        budget,
                        data,
                        cfg,
                        seed,
                        guided_point,
                    )
                except _NotApplicable as reason:
                    point = {"skipped": str(reason)}
                entry["points"][key] = point
                if "test" in point:
                    log(
                        f"B1 {model_name} {key}: units {point['units']} "
                        f"flops {point['flops']:,} test {point['test']:.4f} "
                        f"({point['seconds']:.0f} s)"
                    )
                if path:
                    _write_json(path, results)
    return results


def _write_json(path, results):

    report.write_atomic(path, json.dumps(results, indent=1))


# ------------------------------------------------------------------ report


def summary(b1):
    """`{model: {"reference": (mean, std, n), "rows": {method: {budget key:
    stats}}}}` with stats = mean/std of test, mean units/params/flops."""
    out = {}
    names = [m for m in BUDGETS if m in b1["models"]] + [
        m for m in b1["models"] if m not in BUDGETS
    ]
    for model_name in names:
        entry = b1["models"][model_name]
        refs = [r["test"] for r in entry["reference"].values()]
        rows = {}
        for key, point in entry["points"].items():
            method, budget, _ = key.split("|")
            if "test" not in point:
                continue
            rows.setdefault(method, {}).setdefault(budget, []).append(point)
        stats = {}
        for method, budgets in rows.items():
            for budget, points in budgets.items():
                tests = np.array([p["test"] for p in points]) * 100
                stats.setdefault(method, {})[budget] = {
                    "mean": float(tests.mean()),
                    "std": float(tests.std()),
                    "n": len(points),
                    "units": float(np.mean([p["units"] for p in points])),
                    "params": float(np.mean([p["params"] for p in points])),
                    "flops": float(np.mean([p["flops"] for p in points])),
                    "params_nonzero": float(
                        np.mean(
                            [
                                p.get("params_nonzero", p["params"])
                                for p in points
                            ]
                        )
                    ),
                }
        out[model_name] = {
            "reference": (
                float(np.mean(refs) * 100),
                float(np.std(refs) * 100),
                len(refs),
            ),
            "reference_point": next(iter(entry["reference"].values()), {}),
            "rows": stats,
        }
    return out


def markdown(b1):
    lines = []
    table = summary(b1)
    for model_name, block in table.items():
        mean, std, n = block["reference"]
        ref = block["reference_point"]
        budgets = [budget_key(b) for b in BUDGETS[model_name]]
        lines += [
            f"### {model_name}",
            "",
            f"Unregularized reference: {ref.get('units')} hidden units, "
            f"{ref.get('params', 0):,} params, {ref.get('flops', 0):,} "
            f"FLOPs; test {mean:.2f} ± {std:.2f} % ({n} seeds).",
            "",
            "Test accuracy (%), mean ± std over seeds, at each budget "
            "(kept units / FLOPs in brackets, mean); **bold**: best mean "
            "among the methods that remove units (tfmot, for contrast, "
            "only zeroes weights).",
            "",
            "| method | " + " | ".join(budgets) + " |",
            "|---|" + "---|" * len(budgets),
        ]
        best = {}
        for budget in budgets:
            values = [
                (rows[budget]["mean"], method)
                for method, rows in block["rows"].items()
                if budget in rows and method != "tfmot"
            ]
            if values:
                best[budget] = max(values)[1]
        for method in METHODS:
            rows = block["rows"].get(method)
            if not rows:
                continue
            cells = []
            for budget in budgets:
                s = rows.get(budget)
                if s is None:
                    cells.append("")
                    continue
                size = (
                    f"{s['units']:.0f} units"
                    if budget.startswith("units")
                    else f"{ref.get('flops', 1) / s['flops']:.1f}x"
                )
                if method == "tfmot":
                    size = (
                        f"{s['params_nonzero']:,.0f} nonzero of "
                        f"{s['params']:,.0f} params, FLOPs unchanged"
                    )
                text = f"{s['mean']:.2f} ± {s['std']:.2f} ({size})"
                if best.get(budget) == method:
                    text = f"**{text}**"
                cells.append(text)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def targets(b1):
    """The issue's goals, each 'reached' or 'not reached' with numbers.

    "Guided" is the recipe's default (`GuidedPruning(target=...)`); the
    linear and adaptive variants are reported in the tables but are not
    chosen after the fact. tfmot is contrast only (it removes no unit).
    """
    table = summary(b1)
    lines = []
    ours = ("guided", "guided_linear", "guided_adaptive")

    def guided(block, budget):
        return block["rows"].get("guided", {}).get(budget)

    goals = (
        ("lenet300", "units=66", "LeNet-300-100 <= 66 of 400 hidden units"),
        ("lenet5", "flops/10x", "LeNet-5 >= 10x fewer FLOPs"),
    )
    for model_name, budget, text in goals:
        block = table.get(model_name)
        point = block and guided(block, budget)
        if not point:
            continue
        ref = block["reference"][0]
        gap = ref - point["mean"]
        line = (
            f"- {text} within 0.5 points of the unregularized reference "
            f"(test, mean of {point['n']} seeds): guided {point['mean']:.2f} "
            f"vs {ref:.2f} ("
            + (
                f"{gap:.2f} points below"
                if gap >= 0
                else f"{-gap:.2f} points above"
            )
            + "): "
            + (
                "reached"
                if gap <= TOLERANCE
                else f"not reached, by {gap - TOLERANCE:.2f} points"
            )
        )
        variants = [
            (block["rows"][m][budget]["mean"], m)
            for m in ours[1:]
            if budget in block["rows"].get(m, {})
        ]
        if variants and max(variants)[0] > point["mean"]:
            best, name = max(variants)
            line += (
                f" (the best guided variant, picked after the fact: "
                f"{name} {best:.2f}, "
                + ("within" if ref - best <= TOLERANCE else "not within")
                + " 0.5)"
            )
        lines.append(line)
    for model_name, block in table.items():
        budgets = [budget_key(b) for b in BUDGETS[model_name]]
        wins, total, details = 0, 0, []
        strict_last = None
        for budget in budgets:
            point = guided(block, budget)
            others = [
                (rows[budget]["mean"], m)
                for m, rows in block["rows"].items()
                if m not in ours and m != "tfmot" and budget in rows
            ]
            if not point or not others:
                continue
            top = max(others)
            total += 1
            wins += point["mean"] >= top[0]
            strict_last = point["mean"] > top[0]
            details.append(
                f"{budget}: {point['mean']:.2f} vs {top[1]} {top[0]:.2f}"
            )
        if total:
            ok = wins == total and strict_last
            lines.append(
                f"- {model_name}: guided >= every baseline at every budget "
                f"and strictly better at the highest compression "
                f"({'; '.join(details)}): "
                + ("reached" if ok else f"not reached ({wins} of {total})")
            )
    return lines


def plot(b1, path):
    """Test accuracy against kept FLOPs, one panel per model, error bars
    over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary(b1)
    figure, axes = plt.subplots(
        1, len(table), figsize=(5 * len(table), 4), squeeze=False
    )
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for axis, (model_name, block) in zip(axes[0], table.items()):
        ref = block["reference"][0]
        low = ref - 6.0
        below = []
        for method in METHODS:
            rows = block["rows"].get(method)
            if not rows or method == "tfmot":
                continue
            points = sorted(
                (s["flops"], s["mean"], s["std"]) for s in rows.values()
            )
            if all(y < low for _, y, _ in points):
                below.append(method)
                continue
            x, y, e = zip(*points)
            axis.errorbar(
                x,
                y,
                yerr=e,
                marker="o",
                capsize=2,
                color=colors[method],
                label=method,
            )
        axis.axhline(ref, color="grey", linestyle="--", label="reference")
        axis.axhline(
            ref - TOLERANCE,
            color="grey",
            linestyle=":",
            label="reference - 0.5",
        )
        axis.set_ylim(low, min(100.0, ref + 1.5))
        axis.set_xscale("log")
        axis.set_xlabel("FLOPs after removal")
        axis.set_ylabel("test accuracy (%), mean ± std over seeds")
        title = model_name
        if below:
            title += f"\n(below the axis: {', '.join(below)})"
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=6)
    figure.tight_layout()
    temporary = path + ".tmp.png"
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, path)


def write_docs(b1, page, json_path, plot_path):
    """Writes the raw JSON and the plot next to `page` and replaces the B1
    section of `page` (up to the next `## ` heading) with fresh tables;
    the other sections (B2, B3) are kept as they are."""

    report.write_atomic(json_path, json.dumps(b1, indent=1))
    plot(b1, plot_path)
    with open(page) as f:
        text = f.read()
    section = report.b1_section(b1, os.path.basename(plot_path))
    start = text.find("## B1")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end + 1
        text = text[:start] + section + text[end:]
    report.write_atomic(page, text)


def main(argv=None):
    from benchmarks import data as data_lib

    parser = argparse.ArgumentParser(prog="python -m benchmarks.b1_budget")
    parser.add_argument("--mnist-dir", default=None)
    parser.add_argument("--models", default=",".join(BUDGETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--budgets",
        default=None,
        help="comma-separated budget keys, e.g. flops/10x",
    )
    parser.add_argument("--json", required=True)
    parser.add_argument(
        "--docs",
        default=None,
        help="a page (docs/benchmarks.md) whose B1 section "
        "to regenerate from --json, without running; "
        "the JSON and the plot are written next to it",
    )
    args = parser.parse_args(argv)
    if args.docs:
        with open(args.json) as f:
            b1 = json.load(f)
        folder = os.path.dirname(os.path.abspath(args.docs))
        write_docs(
            b1,
            args.docs,
            os.path.join(folder, "benchmarks_b1.json"),
            os.path.join(folder, "benchmarks_accuracy_vs_flops.png"),
        )
        return
    data = data_lib.load(args.mnist_dir)
    seeds = (
        None if args.seeds is None else [int(s) for s in args.seeds.split(",")]
    )
    start = time.perf_counter()

    log = report.elapsed_log(start)

    run(
        data,
        "quick" if args.quick else "full",
        log,
        methods=args.methods.split(","),
        models=args.models.split(","),
        seeds=seeds,
        path=args.json,
        budgets=args.budgets.split(",") if args.budgets else None,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
