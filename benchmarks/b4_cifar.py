"""B4: CIFAR-10 ResNets, keras_guided side by side with Torch-Pruning.

Protocol, per seed:

1. one *reference* ResNet (`benchmarks/resnet_cifar.py`) is trained (SGD,
   momentum 0.9, Nesterov, decoupled weight decay, cosine learning rate,
   batch 128) and saved to disk, so later runs reuse it;
2. every method starts from the reference weights and gets the same
   `prune_epochs` and ends at (or just under) the FLOPs budget;
3. every method gets the same fine-tuning: `finetune_epochs` of
   distillation from the reference (`keras_guided.Distiller` in Keras, the
   same loss in PyTorch), keeping the epoch (0 to all) with the best
   validation accuracy; the 10,000 test images are read at the end.

Both arms draw the same batches in the same order (`benchmarks/cifar.py`);
the Torch-Pruning arm (`benchmarks/b4_torch.py`) runs in its own process on
the reference weights ported to PyTorch (checked on logits), and its
pruned network is ported back, so FLOPs are counted by
`keras_guided.count_flops` for every arm.

    python -m benchmarks.b4_cifar --cifar-dir ../shared/data/cifar10-jpeg \\
        --json benchmarks/results/b4.json [--quick]

Every cell `(seed, budget, method)` is written to the JSON when done and
skipped on a rerun.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_guided as kg  # noqa: E402
from benchmarks import cifar  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import resnet_cifar  # noqa: E402

METHODS = (
    "guided",
    "tp_group_sl",
    "l1_oneshot",
    "group_lasso",
    "tp_magnitude",
    "slimming",
    "l1_iterative",
    "l1_uniform",
)
TORCH_METHODS = ("tp_group_sl", "tp_magnitude")
BUDGETS = (0.5, 0.25, 1 / 3)  # FLOPs kept, in the order cells are run
DESCRIPTIONS = {
    "guided": "GuidedPruning(target={'flops': f}), the library's default "
    "recipe, during the pruning epochs, then prune_model",
    "group_lasso": "the same with guidance='uniform' (plain group lasso "
    "under the same budget controller)",
    "l1_oneshot": "prune_model(reference, target={'flops': f}): one "
    "global ranking of unit groups by the L2 norm of every tied weight "
    "(kernel slices, bias, BN) over the square root of their count, with "
    "a FLOPs-aware greedy finish to the budget (not Li et al.'s per-layer "
    "L1 ranking), then the pruning epochs spent training",
    "l1_iterative": "the same cut in steps along the cubic path, one per "
    "pruning epoch (at most 4), training between cuts",
    "l1_uniform": "one-shot filter-norm pruning with the same share of "
    "units kept in every layer (the largest share meeting "
    "the budget), then the pruning epochs spent training",
    "slimming": "network slimming (Liu et al., 2017): L1(1e-4) on every BN "
    "gamma during the pruning epochs, then one global |gamma| "
    "threshold (mean over tied channels) meeting the budget",
    "tp_group_sl": "Torch-Pruning GroupNormPruner (group_sl: importance-"
    "scaled group regularization, reg 5e-4, alpha 4) during "
    "the pruning epochs, then global pruning stepped to the "
    "MACs budget (PyTorch, own process)",
    "tp_magnitude": "Torch-Pruning MagnitudePruner (group L1 importance), "
    "global, one shot to the MACs budget from the "
    "reference, then the pruning epochs spent training",
}
# Recipe variants of `guided`, run as `--methods guided:<name>` and chosen
# on the validation images only. Each sets `GuidedPruning` arguments and the
# importance-guidance knobs of `keras_guided.callbacks._importance`.
GUIDED_VARIANTS = {
    # The default before the recipe choice: importance divided by the
    # square root of the marginal cost.
    "v0": {"cost_power": 0.5},
    # The path to the budget in 1 or 2 of the pruning epochs (default: two
    # thirds), leaving more epochs to recover at the cut widths.
    "path1": {"target_epochs": 1},
    "path2": {"target_epochs": 2},
    # Importance not divided by the marginal cost (the default since the
    # recipe choice), or by its fourth root.
    "flat": {"cost_power": 0.0},
    "quarter": {"cost_power": 0.25},
    # Group norm over the layer's mean instead of its rank.
    "relative": {"importance": "relative"},
    "relative_flat": {"importance": "relative", "cost_power": 0.0},
    "flat_path1": {"cost_power": 0.0, "target_epochs": 1},
    "relative_flat_path1": {
        "importance": "relative",
        "cost_power": 0.0,
        "target_epochs": 1,
    },
    # The pruning epochs trained by distillation from the reference (the
    # loss of the common fine-tuning), not by the labels alone.
    "kd": {"distill": True},
    "kd_flat": {"distill": True, "cost_power": 0.0},
    "kd_flat_path1": {"distill": True, "cost_power": 0.0, "target_epochs": 1},
}
SCHEDULES = {
    # A CPU-sized schedule: one cell takes minutes on 2 cores.
    "default": {
        "arch": "resnet20",
        "train_images": 20000,
        "ref_epochs": 15,
        "prune_epochs": 5,
        "finetune_epochs": 3,
        "seeds": [0, 1, 2],
        "ref_lr": 0.1,
        "lr": 0.01,
        "eval_images": None,
    },
    # Torch-Pruning's published CIFAR schedule (for a GPU): ResNet-56, all
    # 45,000 training images, 100 epochs of sparse training, 100 of
    # fine-tuning.
    "tp-published": {
        "arch": "resnet56",
        "train_images": None,
        "ref_epochs": 200,
        "prune_epochs": 100,
        "finetune_epochs": 100,
        "seeds": [0],
        "ref_lr": 0.1,
        "lr": 0.01,
        "eval_images": None,
    },
    # Smoke: every method and the torch arm end to end in minutes.
    "quick": {
        "arch": "resnet20",
        "train_images": 256,
        "ref_epochs": 1,
        "prune_epochs": 1,
        "finetune_epochs": 1,
        "seeds": [0],
        "ref_lr": 0.05,
        "lr": 0.01,
        "eval_images": 200,
        "budgets": [0.5],
    },
}
BATCH_SIZE = 128
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
KD_ALPHA = 0.1
KD_TEMPERATURE = 4.0
SLIMMING_L1 = 1e-4
TP_REG = 5e-4
STREAM_REFERENCE, STREAM_PRUNE, STREAM_FINETUNE = 1, 2, 3
EVAL_BATCH = 1000


def budget_key(fraction):
    """`flops/2x` for 1/2; `flops/2.12x` for a fraction that is not 1/n."""
    times = 1 / fraction
    if abs(times - round(times)) < 1e-3:
        return f"flops/{round(times)}x"
    return f"flops/{times:.2f}x"


def cell_key(method, fraction, seed):
    return f"{method}|{budget_key(fraction)}|{seed}"


# ------------------------------------------------------------ training


def _optimizer(lr, steps, weight_decay=WEIGHT_DECAY):
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(1, steps))
    return keras.optimizers.SGD(
        schedule, momentum=MOMENTUM, nesterov=True, weight_decay=weight_decay
    )


def _weight_decay(cfg):
    """The decoupled weight decay of a schedule (B4's unless it says)."""
    return cfg.get("weight_decay", WEIGHT_DECAY)


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def logits(model, x):
    out = []
    for start in range(0, len(x), EVAL_BATCH):
        batch = cifar.normalize(x[start : start + EVAL_BATCH])
        out.append(keras.ops.convert_to_numpy(model(batch, training=False)))
    return np.concatenate(out)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(logits(model, x), -1) == y))


def train(
    model, data, cfg, seed, stream, epochs, lr, callbacks=(), log=None, label=""
):
    """`epochs` of SGD on the seeded batches of `stream`; returns the
    History (or None for 0 epochs)."""
    if epochs <= 0:
        return None
    steps = cifar.steps_per_epoch(data, cfg["train_images"], BATCH_SIZE)
    model.compile(
        _optimizer(lr, epochs * steps, _weight_decay(cfg)),
        _loss(),
        metrics=["accuracy"],
        jit_compile=cifar.jit_compile(),
    )
    batches = cifar.stream_batches(
        data, seed, stream, epochs, cfg["train_images"], BATCH_SIZE
    )
    extra = [_Progress(log, label)] if log else []
    return model.fit(
        batches,
        steps_per_epoch=steps,
        epochs=epochs,
        verbose=0,
        shuffle=False,
        callbacks=list(callbacks) + extra,
    )


class _Progress(keras.callbacks.Callback):
    def __init__(self, log, label):
        super().__init__()
        self.log, self.label = log, label

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        extra = "".join(
            f" {k} {logs[k]:.4g}"
            for k in ("live_flops", "live_units")
            if k in logs
        )
        self.log(
            f"{self.label} epoch {epoch + 1}: loss "
            f"{logs.get('loss', float('nan')):.4f} train acc "
            f"{logs.get('accuracy', float('nan')):.4f}{extra}"
        )


def distill(student, teacher, data, cfg, seed, log=None, label=""):
    """The common fine-tuning: distillation from the reference, keeping the
    epoch (0..finetune_epochs) with the best validation accuracy, or the
    last epoch when `cfg["finetune_keep"]` is `"last"`.

    Returns `(student, chosen epoch, validation accuracy per epoch)`."""
    epochs = cfg["finetune_epochs"]
    keep_last = cfg.get("finetune_keep", "best") == "last"
    x_val, y_val = data["x_val"], data["y_val"]
    history = [accuracy(student, x_val, y_val)]
    best, best_weights = 0, student.get_weights()
    if epochs <= 0:
        return student, 0, history
    steps = cifar.steps_per_epoch(data, cfg["train_images"], BATCH_SIZE)
    distiller = kg.Distiller(
        student, teacher, alpha=KD_ALPHA, temperature=KD_TEMPERATURE
    )
    distiller.compile(
        _optimizer(cfg["lr"], epochs * steps, _weight_decay(cfg)),
        _loss(),
        metrics=["accuracy"],
        jit_compile=cifar.jit_compile(),
    )
    batches = cifar.stream_batches(
        data, seed, STREAM_FINETUNE, epochs, cfg["train_images"], BATCH_SIZE
    )

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            nonlocal best, best_weights
            value = accuracy(student, x_val, y_val)
            history.append(value)
            if log:
                log(f"{label} fine-tune epoch {epoch + 1}: val {value:.4f}")
            if keep_last:
                best = epoch + 1
            elif value > history[best]:
                best, best_weights = epoch + 1, student.get_weights()

    distiller.fit(
        batches,
        steps_per_epoch=steps,
        epochs=epochs,
        verbose=0,
        shuffle=False,
        callbacks=[KeepBest()],
    )
    if not keep_last:
        student.set_weights(best_weights)
    return student, best, history


def copy_model(model, gamma_l1=None):
    """A copy with the same weights (optionally L1 on every BN gamma)."""

    def clone(layer):
        config = layer.get_config()
        if gamma_l1 and isinstance(layer, keras.layers.BatchNormalization):
            config["gamma_regularizer"] = keras.regularizers.serialize(
                keras.regularizers.L1(gamma_l1)
            )
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


# ------------------------------------------------------------ reference


def reference_path(ref_dir, cfg, seed):
    images = cfg["train_images"] or "all"
    return os.path.join(
        ref_dir,
        f"{cfg['arch']}_seed{seed}_n{images}_"
        f"e{cfg['ref_epochs']}_lr{cfg['ref_lr']}.weights.h5",
    )


def reference(data, cfg, seed, ref_dir, log):
    """The trained reference of `seed`, loaded from `ref_dir` when it was
    trained before; returns `(model, info)`."""
    path = reference_path(ref_dir, cfg, seed)
    keras.utils.set_random_seed(seed)
    model = resnet_cifar.build(cfg["arch"])
    info_path = path[: -len(".weights.h5")] + ".json"
    if os.path.exists(path) and os.path.exists(info_path):
        model.load_weights(path)
        with open(info_path) as f:
            info = json.load(f)
        log(f"reference seed {seed}: loaded {path} (val {info['val']:.4f})")
        return model, info
    start = time.perf_counter()
    train(
        model,
        data,
        cfg,
        seed,
        STREAM_REFERENCE,
        cfg["ref_epochs"],
        cfg["ref_lr"],
        log=log,
        label=f"reference seed {seed}",
    )
    info = {
        "val": accuracy(model, data["x_val"], data["y_val"]),
        "test": accuracy(model, data["x_test"], data["y_test"]),
        "params": kg.stats.count_params(model),
        "flops": kg.stats.count_flops(model),
        "seconds": time.perf_counter() - start,
        "path": path,
    }
    os.makedirs(ref_dir, exist_ok=True)
    temporary = path[: -len(".weights.h5")] + ".tmp.weights.h5"
    model.save_weights(temporary)
    os.replace(temporary, path)

    report.write_atomic(info_path, json.dumps(info, indent=1))
    log(
        f"reference seed {seed}: val {info['val']:.4f} test "
        f"{info['test']:.4f} ({info['seconds']:.0f} s), saved to {path}"
    )
    return model, info


# ------------------------------------------------------------ methods


def _after_cut(model, data):
    return {
        "val_after_cut": accuracy(model, data["x_val"], data["y_val"]),
        "test_after_cut": accuracy(model, data["x_test"], data["y_test"]),
    }


def _slimming_cut(model, fraction):
    """One global |gamma| threshold (mean |gamma| over the BN layers of a
    tied group) meeting the FLOPs budget."""
    groups = kg.find_unit_groups(model)
    scores = []
    for group in groups:
        gammas = [
            keras.ops.convert_to_numpy(s.layer.gamma)[s.positions[:, 0]]
            for s in group.slices
            if s.weight == "gamma"
        ]
        scores.append(
            np.mean(np.abs(gammas), axis=0)
            if gammas
            else np.full(group.num_units, np.inf)
        )
    plan = kg.scoring.plan_from_target(
        groups, model, {"flops": fraction}, scores=scores, relative=False
    )
    return kg.prune_model(model, plan=plan)


def uniform_cut(model, fraction):
    """The reference cut to the largest share `s` of units kept in every
    prunable group (its `ceil(s * n)` largest norms) that meets the FLOPs
    budget: the uniform-width allocation, one shot."""
    groups = kg.find_unit_groups(model)
    scores = kg.scoring.default_scores(groups)
    goal = fraction * kg.stats.count_flops(model)

    def cut(share):
        plan = {}
        for group in groups:
            if group.prunable:
                count = max(1, int(np.ceil(share * group.num_units)))
                order = np.argsort(-scores[group.index], kind="stable")
                plan[group.index] = np.sort(order[:count])
        return kg.prune_model(model, plan=plan)

    low, high = 0.0, 1.0
    for _ in range(12):  # share to 2.4e-4: below one unit of a 64-wide layer
        middle = (low + high) / 2
        if kg.stats.count_flops(cut(middle)) <= goal:
            low = middle
        else:
            high = middle
    return cut(low)


def run_keras_method(method, ref, fraction, data, cfg, seed, log, label):
    """The pruning phase of a Keras method; returns `(pruned model, info)`
    with the accuracy right after the (last) cut in `info`."""
    epochs = cfg["prune_epochs"]
    info = {}
    if method == "l1_oneshot":
        small = kg.prune_model(ref, target={"flops": fraction})
        info.update(_after_cut(small, data))
        train(
            small,
            data,
            cfg,
            seed,
            STREAM_PRUNE,
            epochs,
            cfg["lr"],
            log=log,
            label=label,
        )
        return small, info
    if method == "l1_uniform":
        small = uniform_cut(ref, fraction)
        info.update(_after_cut(small, data))
        train(
            small,
            data,
            cfg,
            seed,
            STREAM_PRUNE,
            epochs,
            cfg["lr"],
            log=log,
            label=label,
        )
        return small, info
    if method == "l1_iterative":
        steps = max(1, min(4, epochs))
        start = kg.stats.count_flops(ref)
        goal = fraction * start
        model = ref
        for i in range(1, steps + 1):
            planned = kg.budget.planned_value(start, goal, i / steps)
            current = kg.stats.count_flops(model)
            if planned < current:
                model = kg.prune_model(
                    model, target={"flops": planned / current}
                )
            if i == steps:
                info.update(_after_cut(model, data))
            share = epochs // steps + (i <= epochs % steps)
            # One optimizer and schedule per segment, on the epochs of the
            # segment's place in the pruning phase.
            _train_segment(
                model,
                data,
                cfg,
                seed,
                epochs,
                sum(
                    epochs // steps + (j <= epochs % steps) for j in range(1, i)
                ),
                share,
                log,
                label,
            )
        return model, info
    if method == "slimming":
        model = copy_model(ref, gamma_l1=SLIMMING_L1)
        train(
            model,
            data,
            cfg,
            seed,
            STREAM_PRUNE,
            epochs,
            cfg["lr"],
            log=log,
            label=label,
        )
        small = _slimming_cut(model, fraction)
        info.update(_after_cut(small, data))
        return small, info
    kwargs = {"guidance": "uniform"} if method == "group_lasso" else {}
    variant = {}
    if method.startswith("guided:"):
        variant = GUIDED_VARIANTS[method.split(":", 1)[1]]
    small, guided_info = guided_phase(
        ref, fraction, data, cfg, seed, log, label, {**kwargs, **variant}
    )
    info.update(guided_info)
    return small, info


def guided_phase(ref, fraction, data, cfg, seed, log, label, variant):
    """`cfg["prune_epochs"]` epochs of `GuidedPruning(target={"flops":
    fraction})` on a copy of `ref`, then `prune_model`; returns `(pruned
    model, info)` with the controller's report and the accuracy right
    after the cut.

    `variant` holds `GuidedPruning` arguments, the importance-guidance
    knobs `cost_power` and `importance` (`keras_guided.callbacks.
    _importance`, restored afterwards) and `distill` (train the copy by
    distillation from `ref`, the loss of the common fine-tuning)."""
    kwargs = dict(variant)
    distilled = kwargs.pop("distill", False)
    knobs = {
        name.upper(): kwargs.pop(name)
        for name in ("cost_power", "importance")
        if name in kwargs
    }
    model = copy_model(ref)
    pruning = kg.GuidedPruning(target={"flops": fraction}, **kwargs)
    from keras_guided.callbacks import _importance

    saved = {name: getattr(_importance, name) for name in knobs}
    try:
        for name, value in knobs.items():
            setattr(_importance, name, value)
        trained = (
            kg.Distiller(model, ref, alpha=KD_ALPHA, temperature=KD_TEMPERATURE)
            if distilled
            else model
        )
        train(
            trained,
            data,
            cfg,
            seed,
            STREAM_PRUNE,
            cfg["prune_epochs"],
            cfg["lr"],
            callbacks=[pruning],
            log=log,
            label=label,
        )
    finally:
        for name, value in saved.items():
            setattr(_importance, name, value)
    report = dict(pruning.budget_report)
    report.pop("trace", None)
    info = {"controller": json.loads(json.dumps(report, default=str))}
    small = kg.prune_model(model)
    info.update(_after_cut(small, data))
    return small, info


def _train_segment(model, data, cfg, seed, total, first, epochs, log, label):
    """Epochs `first .. first + epochs` of a pruning phase of `total`
    epochs, on the same batches as an uninterrupted phase."""
    if epochs <= 0:
        return
    steps = cifar.steps_per_epoch(data, cfg["train_images"], BATCH_SIZE)
    schedule = keras.optimizers.schedules.CosineDecay(cfg["lr"], total * steps)
    lr = float(schedule(first * steps))
    remaining = keras.optimizers.schedules.CosineDecay(
        lr,
        epochs * steps,
        alpha=float(schedule((first + epochs) * steps)) / max(lr, 1e-12),
    )
    model.compile(
        keras.optimizers.SGD(
            remaining,
            momentum=MOMENTUM,
            nesterov=True,
            weight_decay=_weight_decay(cfg),
        ),
        _loss(),
        metrics=["accuracy"],
        jit_compile=cifar.jit_compile(),
    )
    batches = cifar.stream_batches(
        data,
        seed,
        STREAM_PRUNE,
        epochs,
        cfg["train_images"],
        BATCH_SIZE,
        first_epoch=first,
    )
    model.fit(
        batches,
        steps_per_epoch=steps,
        epochs=epochs,
        verbose=0,
        shuffle=False,
        callbacks=[_Progress(log, label)] if log else [],
    )


def run_cell(method, ref, ref_info, fraction, data, cfg, seed, args, log):
    label = f"[{cell_key(method, fraction, seed)}]"
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    if method in TORCH_METHODS:
        from benchmarks import b4_torch_client

        small, info = b4_torch_client.run(
            method, ref, fraction, data, cfg, seed, args, log, label
        )
        info["val_before_finetune"] = info.pop("val_before_finetune_torch")
    else:
        small, info = run_keras_method(
            method, ref, fraction, data, cfg, seed, log, label
        )
        info["val_before_finetune"] = accuracy(
            small, data["x_val"], data["y_val"]
        )
    pruned_seconds = time.perf_counter() - start
    if method in TORCH_METHODS:
        chosen, history = (
            info.pop("finetune_epoch_chosen"),
            info.pop("val_per_finetune_epoch"),
        )
    else:
        small, chosen, history = distill(
            small, ref, data, cfg, seed, log, label
        )
    flops = kg.stats.count_flops(small)
    point = {
        "test": accuracy(small, data["x_test"], data["y_test"]),
        "val": accuracy(small, data["x_val"], data["y_val"]),
        "flops": flops,
        "flops_kept": flops / ref_info["flops"],
        "params": kg.stats.count_params(small),
        "widths": resnet_cifar.conv_widths(small),
        "finetune_epoch_chosen": chosen,
        "val_per_finetune_epoch": history,
        "pruning_seconds": pruned_seconds,
        "seconds": time.perf_counter() - start,
        **info,
    }
    if flops > fraction * ref_info["flops"] * 1.01:
        log(
            f"{label} WARNING: FLOPs kept {point['flops_kept']:.4f} is over "
            f"the budget {fraction:.4f}"
        )
    return point


# ------------------------------------------------------------ the grid


def cells(seeds, budgets, methods):
    """Cells in priority order: per seed, budget 2x for every method, then
    4x, then 3x; methods in `METHODS` order."""
    order = [b for b in BUDGETS if b in budgets] + [
        b for b in budgets if b not in BUDGETS
    ]
    ordered = [m for m in METHODS if m in methods] + [
        m for m in methods if m not in METHODS
    ]
    return [
        (seed, fraction, method)
        for seed in seeds
        for fraction in order
        for method in ordered
    ]


def run(data, cfg, args, log=print):
    path = args.json
    results = {}
    if path and os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    results.setdefault("schedule", {k: v for k, v in cfg.items()})
    results.setdefault(
        "settings",
        {
            "batch_size": BATCH_SIZE,
            "momentum": MOMENTUM,
            "nesterov": True,
            "weight_decay": WEIGHT_DECAY,
            "weight_decay_kind": "decoupled",
            "kd_alpha": KD_ALPHA,
            "kd_temperature": KD_TEMPERATURE,
            "slimming_l1": SLIMMING_L1,
            "tp_reg": TP_REG,
            "split": [
                len(data["y_train"]),
                len(data["y_val"]),
                len(data["y_test"]),
            ],
        },
    )
    results["descriptions"] = dict(DESCRIPTIONS)
    variants = results.setdefault("variants", {})
    for method in args.methods:
        if method.startswith("guided:"):
            variants[method] = GUIDED_VARIANTS[method.split(":", 1)[1]]
    from benchmarks import report as report_lib

    results.setdefault("machine", report_lib.machine())
    results.setdefault("references", {})
    points = results.setdefault("points", {})
    todo = [
        c
        for c in cells(cfg["seeds"], args.budget_list, args.methods)
        if not _done(points.get(cell_key(c[2], c[1], c[0])))
    ]
    log(
        f"B4 {cfg['arch']}: {len(todo)} cells to run "
        f"({len(points)} already in {path})"
    )
    refs = {}
    for seed, fraction, method in todo:
        if seed not in refs:
            keras.backend.clear_session()
            refs[seed] = reference(data, cfg, seed, args.ref_dir, log)
            results["references"][str(seed)] = refs[seed][1]
        ref, ref_info = refs[seed]
        key = cell_key(method, fraction, seed)
        log(f"cell {key}: start")
        try:
            point = run_cell(
                method, ref, ref_info, fraction, data, cfg, seed, args, log
            )
        except _Skipped as reason:
            point = {"skipped": str(reason)}
        except Exception as error:  # noqa: BLE001 - recorded, rerun later
            # One failing cell must not end an unattended grid: it is
            # recorded with its error, said loudly, and run again on resume.
            point = {"error": f"{type(error).__name__}: {error}"}
            log(f"cell {key}: FAILED, {point['error']}")
        points[key] = point
        if "test" in point:
            log(
                f"cell {key}: test {point['test']:.4f} (after cut val "
                f"{point['val_after_cut']:.4f}), FLOPs kept "
                f"{point['flops_kept']:.3f}, params {point['params']:,}, "
                f"{point['seconds']:.0f} s"
            )
        elif "skipped" in point:
            log(f"cell {key}: skipped ({point['skipped']})")
        if path:
            report.write_atomic(
                path, json.dumps(results, indent=1, default=_plain)
            )
    return results


class _Skipped(Exception):
    pass


def _done(point):
    """A cell is done when it has a result or a reason to skip it; a cell
    that failed is run again."""
    return bool(point) and ("test" in point or "skipped" in point)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def load_data(args, cfg):
    arrays = cifar.split(cifar.load(args.cifar_dir, args.cache))
    cifar.shrink_evaluation(arrays, cfg.get("eval_images"))
    return arrays


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.b4_cifar", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--cifar-dir",
        default=None,
        help="folder with cifar10_train.npz and "
        "cifar10_test.npz (not needed once cached)",
    )
    parser.add_argument(
        "--cache",
        default=cifar.DEFAULT_CACHE,
        help="decoded-image cache (outside the repository)",
    )
    parser.add_argument("--json", required=True)
    parser.add_argument(
        "--ref-dir",
        default=None,
        help="where references are saved (default: a "
        "references/ folder next to --json)",
    )
    parser.add_argument(
        "--schedule", default="default", choices=sorted(SCHEDULES)
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the smoke schedule (--schedule quick)",
    )
    for name, text in (
        (
            "train-images",
            "training images per epoch, a fresh seeded "
            "sample of the 45,000 (0: all)",
        ),
        ("ref-epochs", "epochs of the reference"),
        ("prune-epochs", "epochs of every method's pruning phase"),
        ("finetune-epochs", "epochs of the common fine-tuning"),
    ):
        parser.add_argument(
            f"--{name}",
            type=int,
            default=None,
            help=f"{text} (default: the schedule's)",
        )
    parser.add_argument(
        "--arch",
        choices=sorted(resnet_cifar.ARCHS),
        default=None,
        help="default: the schedule's",
    )
    parser.add_argument(
        "--seeds", default=None, help="comma-separated, e.g. 0,1,2"
    )
    parser.add_argument(
        "--budgets",
        default=None,
        help="FLOPs kept, e.g. 0.5,0.25 (default: 1/2, 1/4, 1/3)",
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--torch-python",
        default=os.environ.get("KERAS_GUIDED_TORCH_PYTHON", sys.executable),
        help="Python with torch and torch-pruning for the "
        "Torch-Pruning arm (default: "
        "$KERAS_GUIDED_TORCH_PYTHON, else this Python)",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    cfg = dict(SCHEDULES["quick" if args.quick else args.schedule])
    for name in (
        "train_images",
        "ref_epochs",
        "prune_epochs",
        "finetune_epochs",
        "arch",
    ):
        value = getattr(args, name)
        if value is not None:
            cfg[name] = value
    if cfg["train_images"] is not None and cfg["train_images"] <= 0:
        cfg["train_images"] = None  # 0: all 45,000
    if args.seeds:
        cfg["seeds"] = [int(s) for s in args.seeds.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    variants = {f"guided:{name}" for name in GUIDED_VARIANTS}
    unknown = sorted(set(methods) - set(METHODS) - variants)
    if unknown:
        parser.error(
            f"--methods takes names from {METHODS} or "
            f"{sorted(variants)}; received {unknown}"
        )
    args.methods = methods
    args.budget_list = (
        list(cfg.get("budgets", BUDGETS))
        if not args.budgets
        else [float(eval_fraction(b)) for b in args.budgets.split(",")]
    )
    if args.ref_dir is None:
        args.ref_dir = os.path.join(
            os.path.dirname(os.path.abspath(args.json)), "references"
        )
    return args, cfg


def eval_fraction(text):
    """'0.5' or '1/3' -> float in (0, 1]."""
    if "/" in text:
        top, bottom = text.split("/")
        value = float(top) / float(bottom)
    else:
        value = float(text)
    if not 0 < value <= 1:
        raise ValueError(
            f"a budget is the FLOPs fraction kept, in (0, 1]. "
            f"Received: {text!r}"
        )
    return value


def main(argv=None):
    args, cfg = parse_args(sys.argv[1:] if argv is None else argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    start = time.perf_counter()

    log = report.elapsed_log(start, width=8)

    data = load_data(args, cfg)
    return run(data, cfg, args, log)


if __name__ == "__main__":
    main()
