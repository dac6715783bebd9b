"""B6: the CIFAR-10 pruning grid, one cell at a time, from strong references.

Every cell starts from a reference trained by `benchmarks/b6_reference.py`
(ResNet-20, all 45,000 training images) and spends the same number of
*extra epochs* `E` (full 45,000-image epochs, counted from the reference):
a method's regularization phase plus its fine-tuning at the final widths
add up to `E` for every method.

- `guided`: `GuidedPruning(target={"flops": f})` for `p` epochs (default
  `E // 2` when `E >= 4`, else 1), `prune_model`, then `E - p` epochs of
  fine-tuning;
- `l1_oneshot`: `prune_model(reference, target={"flops": f})` (a global,
  layer-normalized filter-norm ranking with a FLOPs-aware finish), then
  `E` epochs of fine-tuning;
- `li_l1`: Li et al. (2017) per layer: the `ceil(s * n)` largest L1
  filter norms of every prunable layer, the same share `s` everywhere
  (the largest meeting the budget; B4's `l1_uniform`), then `E` epochs;
- `tp_magnitude`: Torch-Pruning's `MagnitudePruner` (group L1 importance,
  global) one shot to the MACs budget, then `E` epochs;
- `tp_group_sl`: Torch-Pruning's `GroupNormPruner` sparsity learning for
  `s` epochs (same rule as `p`) with weight decay 0 and
  `GroupMagnitudeImportance(p=2, normalizer='max')` as in TP's CIFAR
  recipe, global pruning stepped to the MACs budget, then `E - s` epochs.

The Torch-Pruning phases run in their own process (`b4_torch.py`, on the
reference ported to PyTorch); the pruned network comes back to Keras, so
the fine-tuning is the same code for every method: distillation from the
reference (`b4_cifar.distill`: `keras_guided.Distiller`, alpha 0.1,
temperature 4), keeping the *last* epoch (`--finetune-keep best` keeps the
best validation epoch instead; each cell records which). Every phase is
SGD (momentum 0.9, Nesterov, batch 128) with a cosine learning rate from
`--lr` (0.01) to 0 over that phase, decoupled weight decay 5e-3 as in the
reference, except Torch-Pruning's sparsity learning (weight decay 0, as TP
sets it). The regularization phases train on the labels (`guided`'s `kd`
variants by distillation).

Variants (`--methods guided:kd,tp_group_sl:reg2e-3`; `guided:all` for
every one) are chosen on the
validation images of the tuning seed (`--role tune`, seed 0 only); test
seeds (`--role test`) run only the variant in `CHOSEN`, or `default` until
a choice is recorded there (the cell says which: `variant_source`).
`--show-choices` prints the best variant per method, budget and `E` from
the tuning cells.

Each cell is written to `--json` (default `docs/benchmarks_b6.json`) when
done, under the key `(arch, budget, method, variant, seed, extra_epochs)`,
and skipped when already there; the references' rows are copied from their
info files.

    python -m benchmarks.b6_cifar --role tune --seeds 0 --extra-epochs 2 \\
        --budgets 2x,4x --methods guided,guided:kd,l1_oneshot \\
        --torch-python /path/to/torch/python
    python -m benchmarks.b6_cifar --quick --methods guided,l1_oneshot
"""

import argparse
import contextlib
import fcntl
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_guided as kg  # noqa: E402
from benchmarks import b4_cifar  # noqa: E402
from benchmarks import b6_reference  # noqa: E402
from benchmarks import cifar  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import resnet_cifar  # noqa: E402

ARCH = "resnet20"
BUDGETS = ("flops/2x", "flops/4x", "flops/3x")  # in the order they run
EXTRA_EPOCHS = (2, 8)
METHODS = ("guided", "l1_oneshot", "li_l1", "tp_magnitude", "tp_group_sl")
TORCH_METHODS = ("tp_magnitude", "tp_group_sl")
LR = 0.01
WEIGHT_DECAY = b6_reference.WEIGHT_DECAY
TUNE_SEEDS = (0,)
DEFAULT_JSON = os.path.join("docs", "benchmarks_b6.json")
KEY = ("arch", "budget", "method", "variant", "seed", "extra_epochs")
DESCRIPTIONS = {
    "guided": "GuidedPruning(target={'flops': f}) for p epochs, prune_model, "
    "then E - p epochs of distillation",
    "l1_oneshot": "prune_model(reference, target={'flops': f}): global, "
    "layer-normalized filter-norm ranking with a FLOPs-aware finish, then "
    "E epochs of distillation",
    "li_l1": "Li et al. (2017): each prunable layer keeps the same share of "
    "its largest-L1 filters (the largest share meeting the budget), then "
    "E epochs of distillation",
    "tp_magnitude": "Torch-Pruning MagnitudePruner (group L1, global) one "
    "shot to the MACs budget, then E epochs of distillation",
    "tp_group_sl": "Torch-Pruning GroupNormPruner sparsity learning for s "
    "epochs (weight decay 0, GroupMagnitudeImportance(p=2, "
    "normalizer='max')), global pruning to the MACs budget, then E - s "
    "epochs of distillation",
}
# Variants per method, chosen on the tuning seed's validation images.
# `regularization_epochs` (the `p` of guided, the `s` of tp_group_sl):
# an int, or "most" for `E - 1`; absent, the default rule.
VARIANTS = {
    "guided": {
        "default": {},
        # The penalty epochs trained by distillation from the reference.
        "kd": {"distill": True},
        # One penalty epoch, or all but one, instead of `E // 2`.
        "p1": {"regularization_epochs": 1},
        "pmost": {"regularization_epochs": "most"},
        # Group norm over the layer's mean live norm instead of its rank:
        # lets the budget take more from weak layers.
        "relative": {"importance": "relative"},
        # Importance over the square root of the unit's marginal cost.
        "cost": {"cost_power": 0.5},
        "kd_relative": {"distill": True, "importance": "relative"},
    },
    # TP's default reg is 5e-4 (for 100 epochs of sparsity learning); the
    # larger ones shrink the weakest groups within a few epochs.
    "tp_group_sl": {
        "default": {"reg": 5e-4},
        "reg2e-3": {"reg": 2e-3},
        "reg5e-3": {"reg": 5e-3},
        "reg2e-2": {"reg": 2e-2},
        "reg5e-2": {"reg": 5e-2},
    },
    "l1_oneshot": {"default": {}},
    "li_l1": {"default": {}},
    "tp_magnitude": {"default": {}},
}
# The variants chosen on the tuning seed's validation accuracy (fill from
# `--show-choices`): `"method|budget|E"` (e.g. `"guided|flops/2x|2"`) or
# `"method"` for every budget and `E`. Test cells run only these.
CHOSEN = {}
QUICK = {
    "train_images": 256,
    "eval_images": 200,
    "ref_epochs": 1,
    "ref_lr": 0.05,
    "extra_epochs": [2],
    "budgets": ["flops/2x"],
}


# ------------------------------------------------------------ the plan


def expand_methods(names):
    """`guided:all` -> every variant of `guided`, in `VARIANTS` order."""
    out = []
    for name in names:
        method, _, variant = name.partition(":")
        if variant == "all" and method in VARIANTS:
            out += [f"{method}:{v}" for v in VARIANTS[method]]
        else:
            out.append(name)
    return out


def regularization_epochs(extra_epochs, setting=None):
    """`p` (or `s`) of `E` extra epochs: `setting` (an int, or "most" for
    `E - 1`), by default `E // 2` when `E >= 4`, else 1."""
    if setting == "most":
        return max(1, extra_epochs - 1)
    if setting is not None:
        return min(int(setting), extra_epochs)
    return extra_epochs // 2 if extra_epochs >= 4 else 1


def effective(method, variant, extra_epochs):
    """The settings a cell runs with (regularization epochs resolved)."""
    settings = dict(VARIANTS[method][variant])
    if method in ("guided", "tp_group_sl"):
        settings["regularization_epochs"] = regularization_epochs(
            extra_epochs, settings.get("regularization_epochs")
        )
    else:
        settings["regularization_epochs"] = 0
    return settings


def chosen_variant(method, budget, extra_epochs):
    """`(variant, source)`: the `CHOSEN` variant for the cell, or
    `"default"` with a note that none was chosen yet."""
    for key in (f"{method}|{budget}|{extra_epochs}", method):
        if key in CHOSEN:
            return CHOSEN[key], f"chosen on the tuning seed ({key})"
    return "default", "default: no variant chosen on the tuning seed yet"


def parse_budget(text):
    """'2x', 'flops/2x', '0.5' or '1/2' -> 'flops/2x'."""
    value = text.strip().removeprefix("flops/")
    try:
        if value.endswith("x"):
            fraction = b4_cifar.eval_fraction(f"1/{value[:-1]}")
        else:
            fraction = b4_cifar.eval_fraction(value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            "a budget is how many times fewer FLOPs (2x, 3x, 4x) or the "
            f"fraction kept (0.5, 1/3). Received: {text!r}"
        ) from None
    return b4_cifar.budget_key(fraction)


def budget_fraction(budget):
    """'flops/2x' -> 0.5."""
    return 1 / float(budget[len("flops/") : -1])


def plan_cells(methods, budgets, extra_epochs, seeds, role, log=print):
    """The cells to run, in order (seed, E, budget, method):
    `[(budget, method, variant, seed, E, variant_source)]`.

    Raises:
        ValueError: a test cell on a tuning seed, a tuning cell on another
            seed, an unknown variant, or a test cell of a variant that was
            not chosen.
    """
    if role not in ("tune", "test"):
        raise ValueError(f"role must be 'tune' or 'test'. Received: {role!r}")
    for seed in seeds:
        if role == "test" and seed in TUNE_SEEDS:
            raise ValueError(
                f"seed {seed} chooses the variants (TUNE_SEEDS={TUNE_SEEDS}); "
                "test cells run on other seeds. Pass --seeds 1,2,3."
            )
        if role == "tune" and seed not in TUNE_SEEDS:
            raise ValueError(
                f"tuning runs on TUNE_SEEDS={TUNE_SEEDS} only, so the other "
                f"seeds stay clean for testing. Received: seed {seed}. Pass "
                "--role test, or add the seed to TUNE_SEEDS before any test "
                "cell uses it."
            )
    cells = []
    for seed in seeds:
        for epochs in extra_epochs:
            for budget in budgets:
                for name in methods:
                    method, _, variant = name.partition(":")
                    if method not in VARIANTS:
                        raise ValueError(
                            f"--methods takes {METHODS}, optionally with "
                            f":variant. Received: {name!r}"
                        )
                    if variant and variant not in VARIANTS[method]:
                        raise ValueError(
                            f"{method} has the variants "
                            f"{sorted(VARIANTS[method])}. Received: {name!r}"
                        )
                    source = "asked for (tuning)"
                    if role == "test":
                        chosen, source = chosen_variant(method, budget, epochs)
                        if variant and variant != chosen:
                            raise ValueError(
                                f"a test cell runs only the variant chosen "
                                f"on the tuning seed: {method} at {budget}, "
                                f"E={epochs} runs {chosen!r} ({source}). "
                                f"Received: {name!r}. Pass --methods "
                                f"{method}, or run the variant with --role "
                                "tune on the tuning seed."
                            )
                        variant = chosen
                    variant = variant or "default"
                    if variant != "default" and effective(
                        method, variant, epochs
                    ) == effective(method, "default", epochs):
                        log(
                            f"{method}:{variant} at E={epochs} is the same "
                            f"as {method}:default; not run"
                        )
                        continue
                    cells.append(
                        (budget, method, variant, seed, epochs, source)
                    )
    return cells


# ------------------------------------------------------------ the JSON


def cell_key(row):
    return tuple(row[k] for k in KEY)


def load_results(path):
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"references": [], "cells": []}


def put_row(rows, row, key_names):
    """`rows` with `row` in place of the one of the same key (else added)."""
    key = tuple(row[k] for k in key_names)
    kept = [r for r in rows if tuple(r.get(k) for k in key_names) != key]
    return kept + [row]


@contextlib.contextmanager
def _locked(path):
    """Holds `path + '.lock'` so two grids writing one JSON take turns."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record(path, reference=None, cell=None, header=None):
    """Reads `path` again, puts the reference row and/or the cell row in
    by key, and writes it atomically; returns the results."""
    with _locked(path):
        results = load_results(path)
        for name, value in (header or {}).items():
            results.setdefault(name, {}).update(value)
        if reference is not None:
            results["references"] = put_row(
                results["references"], reference, ("arch", "seed", "epochs")
            )
        if cell is not None:
            results["cells"] = put_row(results["cells"], cell, KEY)
        report.write_atomic(
            path, json.dumps(results, indent=1, default=b4_cifar._plain)
        )
    return results


def show_choices(path):
    """The best tuning variant (validation accuracy, mean over tuning
    seeds) per `method|budget|E`, as a `CHOSEN` dict literal."""
    scores = {}
    for row in load_results(path)["cells"]:
        if row.get("role") != "tune":
            continue
        key = f"{row['method']}|{row['budget']}|{row['extra_epochs']}"
        scores.setdefault(key, {}).setdefault(row["variant"], []).append(
            row["val"]
        )
    lines = ["CHOSEN = {"]
    for key in sorted(scores):
        means = {v: float(np.mean(s)) for v, s in scores[key].items()}
        best = max(sorted(means), key=means.get)
        others = ", ".join(f"{v} {100 * m:.2f}" for v, m in means.items())
        lines.append(f"    {key!r}: {best!r},  # val: {others}")
    lines.append("}")
    return "\n".join(lines)


# ------------------------------------------------------------ a cell


def reference(args, data, seed, log):
    """`(model, reference row)` of `seed`: the finished B6 reference, or in
    quick mode a tiny one trained here."""
    if args.quick:
        keras.utils.set_random_seed(seed)
        model = resnet_cifar.build(args.arch)
        b4_cifar.train(
            model,
            data,
            args.cfg,
            seed,
            b6_reference.STREAM_REFERENCE,
            args.ref_epochs,
            args.ref_lr,
        )
        info = {
            "val": b4_cifar.accuracy(model, data["x_val"], data["y_val"]),
            "test": b4_cifar.accuracy(model, data["x_test"], data["y_test"]),
        }
    else:
        name = b6_reference.stem(args.arch, seed, args.ref_epochs, args.ref_lr)
        files = [
            os.path.join(args.ref_dir, name + ending)
            for ending in (".weights.h5", ".json")
        ]
        if not all(os.path.exists(f) for f in files):
            raise FileNotFoundError(
                f"the reference {name} is not finished: {files} must exist. "
                "Train it first: python -m benchmarks.b6_reference --seed "
                f"{seed} --epochs {args.ref_epochs} --lr {args.ref_lr}."
            )
        model, info = b6_reference.train_reference(
            data,
            args.arch,
            seed,
            args.ref_epochs,
            args.ref_lr,
            None,
            args.ref_dir,
            None,
            log,
        )
    row = {
        "arch": args.arch,
        "seed": seed,
        "val": info["val"],
        "test": info["test"],
        "epochs": args.ref_epochs,
        "lr": args.ref_lr,
        "flops": kg.stats.count_flops(model),
        "params": kg.stats.count_params(model),
    }
    return model, row


def cut(method, settings, ref, fraction, data, cfg, seed, args, log, label):
    """The regularization phase and the cut; returns `(pruned model,
    info)` with `after_cut_val` and `after_cut_test`."""
    epochs = settings["regularization_epochs"]
    if method == "guided":
        variant = {
            k: v for k, v in settings.items() if k != "regularization_epochs"
        }
        small, info = b4_cifar.guided_phase(
            ref,
            fraction,
            data,
            {**cfg, "prune_epochs": epochs},
            seed,
            log,
            label,
            variant,
        )
    elif method in TORCH_METHODS:
        from benchmarks import b4_torch_client

        torch_cfg = {
            **cfg,
            "prune_epochs": epochs,
            "finetune_epochs": 0,  # fine-tuned here, like every method
            **({"tp_reg": settings["reg"]} if "reg" in settings else {}),
            "prune_weight_decay": 0.0,
            "tp_normalizer": "max",
        }
        small, info = b4_torch_client.run(
            method, ref, fraction, data, torch_cfg, seed, args, log, label
        )
        for name in ("finetune_epoch_chosen", "val_per_finetune_epoch"):
            info.pop(name, None)
    else:
        if method == "l1_oneshot":
            small = kg.prune_model(ref, target={"flops": fraction})
        else:
            small = b4_cifar.uniform_cut(ref, fraction)
        info = b4_cifar._after_cut(small, data)
    info["after_cut_val"] = info.pop("val_after_cut")
    info["after_cut_test"] = info.pop("test_after_cut")
    return small, info


def run_cell(cell, ref, ref_row, data, args, log):
    """Runs one cell; returns its row."""
    budget, method, variant, seed, extra_epochs, source = cell
    label = f"[{method}:{variant} {budget} E={extra_epochs} seed {seed}]"
    settings = effective(method, variant, extra_epochs)
    fraction = budget_fraction(budget)
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    small, info = cut(
        method, settings, ref, fraction, data, args.cfg, seed, args, log, label
    )
    log(
        f"{label} after the cut: val {info['after_cut_val']:.4f} "
        f"({time.perf_counter() - start:.0f} s)"
    )
    finetune_epochs = extra_epochs - settings["regularization_epochs"]
    small, kept, history = b4_cifar.distill(
        small,
        ref,
        data,
        {**args.cfg, "finetune_epochs": finetune_epochs},
        seed,
        log,
        label,
    )
    flops = kg.stats.count_flops(small)
    row = {
        "arch": args.arch,
        "budget": budget,
        "method": method,
        "variant": variant,
        "seed": seed,
        "role": args.role,
        "extra_epochs": extra_epochs,
        "val": b4_cifar.accuracy(small, data["x_val"], data["y_val"]),
        "test": b4_cifar.accuracy(small, data["x_test"], data["y_test"]),
        "after_cut_val": info.pop("after_cut_val"),
        "after_cut_test": info.pop("after_cut_test"),
        "flops_kept": flops / ref_row["flops"],
        "params": kg.stats.count_params(small),
        "seconds": round(time.perf_counter() - start, 1),
        "variant_settings": VARIANTS[method][variant],
        "variant_source": source,
        "regularization_epochs": settings["regularization_epochs"],
        "finetune_epochs": finetune_epochs,
        "finetune_keep": args.cfg["finetune_keep"],
        "finetune_epoch_kept": kept,
        "val_per_finetune_epoch": history,
        "lr": args.cfg["lr"],
        "train_images": args.cfg["train_images"] or len(data["y_train"]),
        "widths": resnet_cifar.conv_widths(small),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        **info,
    }
    if row["flops_kept"] > fraction * 1.01:
        log(
            f"{label} WARNING: FLOPs kept {row['flops_kept']:.4f} is over "
            f"the budget {fraction:.4f}"
        )
    return row


# ------------------------------------------------------------ the grid


def settings_header(args):
    return {
        "settings": {
            "extra_epoch_images": args.cfg["train_images"] or 45000,
            "batch_size": b4_cifar.BATCH_SIZE,
            "momentum": b4_cifar.MOMENTUM,
            "nesterov": True,
            "lr": args.cfg["lr"],
            "lr_schedule": "cosine to 0 within each phase",
            "weight_decay": WEIGHT_DECAY,
            "weight_decay_kind": "decoupled; 0 in TP sparsity learning",
            "kd_alpha": b4_cifar.KD_ALPHA,
            "kd_temperature": b4_cifar.KD_TEMPERATURE,
            "tp_normalizer": "max",
            "finetune_keep": args.cfg["finetune_keep"],
            "tune_seeds": list(TUNE_SEEDS),
        },
        "descriptions": DESCRIPTIONS,
        "variants": VARIANTS,
        "chosen": CHOSEN,
    }


def run(args, data=None, log=None):
    """Runs the cells of `args` not yet in `args.json`; returns the
    results."""
    log = log or _log
    cells = plan_cells(
        args.methods,
        args.budgets,
        args.extra_epochs,
        args.seeds,
        args.role,
        log,
    )
    done = {cell_key(row) for row in load_results(args.json)["cells"]}
    todo = [
        c
        for c in cells
        if (args.arch, c[0], c[1], c[2], c[3], c[4]) not in done
    ]
    log(
        f"B6 {args.arch}: {len(todo)} of {len(cells)} cells to run "
        f"({len(cells) - len(todo)} already in {args.json})"
    )
    results = record(args.json, header=settings_header(args))
    if not todo:
        return results
    if data is None:
        data = load_data(args)
    refs = {}
    for cell in todo:
        seed = cell[3]
        if seed not in refs:
            keras.backend.clear_session()
            refs[seed] = reference(args, data, seed, log)
            record(args.json, reference=refs[seed][1])
        ref, ref_row = refs[seed]
        label = f"{cell[1]}:{cell[2]} {cell[0]} E={cell[4]} seed {seed}"
        log(f"cell {label}: start")
        try:
            row = run_cell(cell, ref, ref_row, data, args, log)
        except b4_cifar._Skipped as reason:
            log(f"cell {label}: not run ({reason})")
            continue
        results = record(args.json, cell=row)
        log(
            f"cell {label}: val {row['val']:.4f} test {row['test']:.4f} "
            f"(after the cut {row['after_cut_val']:.4f}), FLOPs kept "
            f"{row['flops_kept']:.3f}, {row['seconds']:.0f} s"
        )
    return results


def load_data(args):
    data = cifar.split(cifar.load(args.cifar_dir, args.cache))
    return cifar.shrink_evaluation(data, args.cfg["eval_images"])


def _log(message):
    print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)


def _csv(text, kind=str):
    return [kind(t.strip()) for t in text.split(",") if t.strip()]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.b6_cifar", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cifar-dir", default=None)
    parser.add_argument("--cache", default=cifar.DEFAULT_CACHE)
    parser.add_argument("--json", default=None, help=f"default {DEFAULT_JSON}")
    parser.add_argument("--ref-dir", default=b6_reference.DEFAULT_DIR)
    parser.add_argument("--ref-epochs", type=int, default=40)
    parser.add_argument("--ref-lr", type=float, default=0.1)
    parser.add_argument(
        "--arch", default=ARCH, choices=sorted(resnet_cifar.ARCHS)
    )
    parser.add_argument("--role", choices=("tune", "test"), default="tune")
    parser.add_argument("--seeds", default=None, help="e.g. 1,2,3")
    parser.add_argument(
        "--budgets", default=None, help="e.g. 2x,4x (default 2x,4x,3x)"
    )
    parser.add_argument(
        "--extra-epochs", default=None, help="e.g. 2,8 (default 2,8)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="e.g. guided,guided:kd,tp_group_sl:reg2e-3",
    )
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument(
        "--finetune-keep",
        choices=("last", "best"),
        default="last",
        help="the fine-tuning's last epoch, or its best validation epoch",
    )
    parser.add_argument(
        "--torch-python",
        default=os.environ.get("KERAS_GUIDED_TORCH_PYTHON", sys.executable),
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 256-image epochs, 200 evaluation images, a "
        "1-epoch reference trained here, a temporary JSON",
    )
    parser.add_argument("--show-choices", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.ref_epochs, args.ref_lr = QUICK["ref_epochs"], QUICK["ref_lr"]
        if args.json is None:
            handle, args.json = tempfile.mkstemp(suffix="_b6_quick.json")
            os.close(handle)
            os.remove(args.json)
    args.json = args.json or DEFAULT_JSON
    default_seeds = TUNE_SEEDS if args.role == "tune" else (1, 2, 3)
    args.seeds = _csv(args.seeds, int) if args.seeds else list(default_seeds)
    if args.budgets is None:
        args.budgets = ",".join(QUICK["budgets"] if args.quick else BUDGETS)
    args.budgets = [parse_budget(b) for b in _csv(args.budgets)]
    if args.extra_epochs:
        args.extra_epochs = _csv(args.extra_epochs, int)
    else:
        args.extra_epochs = (
            QUICK["extra_epochs"] if args.quick else EXTRA_EPOCHS
        )
    args.methods = expand_methods(_csv(args.methods))
    args.cfg = {
        "arch": args.arch,
        "train_images": QUICK["train_images"] if args.quick else None,
        "eval_images": QUICK["eval_images"] if args.quick else None,
        "lr": args.lr,
        "weight_decay": WEIGHT_DECAY,
        "finetune_keep": args.finetune_keep,
    }
    return args


def main(argv=None, data=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.show_choices:
        print(show_choices(args.json))
        return None
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    try:
        plan_cells(
            args.methods,
            args.budgets,
            args.extra_epochs,
            args.seeds,
            args.role,
            log=lambda message: None,
        )
    except ValueError as error:
        raise SystemExit(f"b6_cifar: {error}") from None
    try:
        results = run(args, data)
    except FileNotFoundError as error:  # an unfinished reference
        raise SystemExit(f"b6_cifar: {error}") from None
    _log(f"results in {args.json}")
    return results


if __name__ == "__main__":
    main()
