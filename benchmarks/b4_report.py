"""B4 report: markdown tables, paired verdicts, the plot and the docs section.

    python -m benchmarks.b4_report --json docs/benchmarks_b4.json \\
        [--docs docs/benchmarks.md] [--md out.md]

Everything on the page is computed from the JSON alone (no CIFAR data, no
training): means with the sample std over seeds, and for guided against
each peer the per-seed paired differences with the 95 % t-interval of
their mean (`benchmarks.stats`), called a tie when it contains zero. Seeds
named under the JSON's `"selection"` were used to choose the recipe: each
comparison is shown over all seeds and over the seeds not used for any
choice. Arms run far outside their authors' recipes, or that collapsed,
are labelled so and not counted among the peers guided is compared with.

With `--docs`, the `## B4` section of the page is replaced (or appended)
and the JSON and the plot are written next to it
(`benchmarks_b4.json`, `benchmarks_b4_cifar.png`).
"""

import argparse
import json
import os
import sys

import numpy as np

from benchmarks import report
from benchmarks import stats

METHODS = (
    "guided",
    "tp_group_sl",
    "l1_oneshot",
    "l1_iterative",
    "l1_uniform",
    "group_lasso",
    "slimming",
    "tp_magnitude",
)
BUDGET_ORDER = ("flops/2x", "flops/3x", "flops/4x")
REFERENCE_TOLERANCE = 0.3  # points, at 2x
LEAD_AT_4X = 1.0  # points over the best baseline
SEEDS_WANTED = 3
PLOT_NAME = "benchmarks_b4_cifar.png"
JSON_NAME = "benchmarks_b4.json"
# A cell at most this accuracy (fraction) is at chance on CIFAR-10's ten
# classes; an arm with every cell there has collapsed.
CHANCE = 0.11
# Published test accuracy (%) of the architectures with their full
# schedule: He et al., 2016, "Deep Residual Learning for Image
# Recognition", Table 6 (164 epochs-equivalent, 64k iterations).
PUBLISHED_REFERENCE = {"resnet20": 91.25, "resnet56": 93.03}
# Torch-Pruning's published CIFAR-10 sparsity learning (`group_sl`,
# benchmarks/main.py of Torch-Pruning): 100 epochs of the 50,000 training
# images, batch 128, lr 0.01 divided by 10 at epochs 60 and 80, reg 5e-4,
# weight decay 0 and `normalizer='max'`.
TP_RECIPE = {
    "epochs": 100,
    "images": 50000,
    "batch_size": 128,
    "lr": 0.01,
    "milestones": (60, 80),
}
# Network slimming's CIFAR recipe (Liu et al., 2017): L1 1e-4 on BN
# gammas during all 160 training epochs.
SLIMMING_RECIPE_EPOCHS = 160


def _points(b4):
    """The grid's finished cells: `(method, budget, seed, point)`, recipe
    variants (`guided:<name>`) left out."""
    for key, point in b4.get("points", {}).items():
        method, budget, seed = key.split("|")
        if "test" in point and ":" not in method:
            yield method, budget, seed, point


def summary(b4):
    """`{method: {budget: stats}}`, stats in percent (test, val after cut,
    test after cut) and means of FLOPs kept, params, seconds; `std` is the
    sample std over seeds (NaN for one seed)."""
    rows = {}
    for method, budget, _, point in _points(b4):
        rows.setdefault(method, {}).setdefault(budget, []).append(point)
    out = {}
    for method, budgets in rows.items():
        for budget, points in budgets.items():
            test = np.array([p["test"] for p in points]) * 100
            out.setdefault(method, {})[budget] = {
                "mean": float(test.mean()),
                "std": stats.sample_std(test),
                "n": len(points),
                "val_after_cut": 100
                * float(np.mean([p["val_after_cut"] for p in points])),
                "test_after_cut": 100
                * float(np.mean([p["test_after_cut"] for p in points])),
                "flops_kept": float(np.mean([p["flops_kept"] for p in points])),
                "flops": float(np.mean([p["flops"] for p in points])),
                "params": float(np.mean([p["params"] for p in points])),
                "seconds": float(np.mean([p["seconds"] for p in points])),
            }
    return out


def reference(b4):
    refs = list(b4.get("references", {}).values())
    if not refs:
        return None
    test = np.array([r["test"] for r in refs]) * 100
    return {
        "mean": float(test.mean()),
        "std": stats.sample_std(test),
        "n": len(refs),
        "flops": refs[0]["flops"],
        "params": refs[0]["params"],
        "seconds": float(np.mean([r["seconds"] for r in refs])),
    }


def _mean_std(s):
    """'76.71 ± 0.75' (sample std), or '73.30 (one seed)'."""
    if s["n"] < 2:
        return f"{s['mean']:.2f} (one seed)"
    return f"{s['mean']:.2f} ± {s['std']:.2f}"


def _budgets(table):
    present = {b for rows in table.values() for b in rows}
    return [b for b in BUDGET_ORDER if b in present] + sorted(
        present - set(BUDGET_ORDER)
    )


def _methods(table):
    return [m for m in METHODS if m in table] + sorted(
        set(table) - set(METHODS)
    )


def _summed_cosine_lr(lr, steps):
    """The sum over `steps` steps of a cosine learning rate from `lr` to
    zero (`lr * (1 + cos(pi * t / steps)) / 2`, as the PyTorch arm)."""
    t = np.arange(steps)
    return float(np.sum(lr * 0.5 * (1.0 + np.cos(np.pi * t / steps))))


def _summed_step_lr(recipe):
    steps = -(-recipe["images"] // recipe["batch_size"])
    total, lr, start = 0.0, recipe["lr"], 0
    for milestone in (*recipe["milestones"], recipe["epochs"]):
        total += lr * steps * (milestone - start)
        lr, start = lr / 10, milestone
    return total


def caveats(b4):
    """`{method: why it is not counted as a tuned peer}`: arms that
    collapsed to chance in every cell, and the regularized arms run far
    outside their authors' recipes (computed from the schedule)."""
    schedule, settings = b4.get("schedule", {}), b4.get("settings", {})
    cells = {}
    for method, _, _, point in _points(b4):
        cells.setdefault(method, []).append(point["test"])
    out = {}
    for method, tests in cells.items():
        if max(tests) <= CHANCE:
            out[method] = (
                f"collapsed: chance accuracy (at most {100 * max(tests):.1f}"
                " %) in every cell, never recovered"
            )
    epochs = schedule.get("prune_epochs")
    if "slimming" in cells and "slimming" not in out:
        out["slimming"] = (
            f"untuned: L1 {settings.get('slimming_l1')} on BN gammas for "
            f"{epochs} epochs, a recipe of {SLIMMING_RECIPE_EPOCHS} epochs "
            f"run for {epochs}"
        )
    if "tp_group_sl" in cells and "tp_group_sl" not in out:
        images = (
            schedule.get("train_images") or settings.get("split", [45000])[0]
        )
        steps = -(-images // settings.get("batch_size", 128)) * (epochs or 0)
        ours = _summed_cosine_lr(schedule.get("lr", 0.0), steps)
        theirs = _summed_step_lr(TP_RECIPE)
        ratio = f"about {theirs / ours:.0f}x" if ours else "far"
        out["tp_group_sl"] = (
            "untuned, far outside Torch-Pruning's recipe: reg "
            f"{settings.get('tp_reg')} for {epochs} epochs of {images:,} "
            f"images at cosine lr from {schedule.get('lr')} (summed lr "
            f"{ours:.1f}) against its {TP_RECIPE['epochs']} epochs of "
            f"{TP_RECIPE['images']:,} at {TP_RECIPE['lr']} with steps at "
            f"{TP_RECIPE['milestones'][0]}/{TP_RECIPE['milestones'][1]} "
            f"(summed lr {theirs:.0f}): {ratio} less regularization; "
            "weight decay on during sparsity learning (Torch-Pruning sets "
            "it to 0); the default importance normalizer instead of "
            "Torch-Pruning's `'max'` for CIFAR"
        )
    return out


def markdown(b4):
    """The tables: test accuracy per method and budget, then one detail
    table per budget."""
    table = summary(b4)
    ref = reference(b4)
    flagged = caveats(b4)
    budgets = _budgets(table)
    lines = []
    if ref:
        lines += [
            f"Reference: {ref['params']:,} params, {ref['flops']:,} "
            f"FLOPs, test {_mean_std(ref)} % ({ref['n']} seed(s), sample "
            f"std), trained in {ref['seconds'] / 60:.0f} min.",
            "",
        ]
    lines += [
        "Test accuracy (%), mean ± sample std over seeds (seeds in "
        "brackets; no ± for one seed), every seed included (see the "
        "paired differences below for the seeds not used for any "
        "choice). No cell is bold: which method is ahead is read from "
        "the paired intervals, not from the means.",
        "",
        "| method | " + " | ".join(budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for method in _methods(table):
        cells = []
        for budget in budgets:
            s = table[method].get(budget)
            cells.append(
                ""
                if s is None
                else f"{s['mean']:.2f} ({s['n']})"
                if s["n"] < 2
                else f"{_mean_std(s)} ({s['n']})"
            )
        label = f"`{method}`" + (
            f" ({flagged[method].split(':')[0].split(',')[0]})"
            if method in flagged
            else ""
        )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for budget in budgets:
        lines += [
            f"#### {budget}",
            "",
            "| method | test % | after cut: val % / test % | FLOPs "
            "kept | params | wall s per cell | seeds |",
            "|---|---|---|---|---|---|---|",
        ]
        for method in _methods(table):
            s = table[method].get(budget)
            if s is None:
                continue
            lines.append(
                f"| `{method}` | {_mean_std(s)} | "
                f"{s['val_after_cut']:.2f} / {s['test_after_cut']:.2f} | "
                f"{s['flops_kept']:.3f} ({s['flops'] / 1e6:.1f} M) | "
                f"{s['params']:,.0f} | {s['seconds']:.0f} | {s['n']} |"
            )
        lines.append("")
    skipped = {
        k: p.get("skipped") or f"failed: {p['error']}"
        for k, p in b4.get("points", {}).items()
        if "skipped" in p or "error" in p
    }
    superseded = b4.get("superseded", {})
    if superseded:
        lines += (
            [
                "Superseded cells (run again after a fix; the old result "
                "is kept in the JSON):",
                "",
            ]
            + [
                f"- `{k}`: test {100 * p['test']:.2f} % ({p['why']})"
                for k, p in sorted(superseded.items())
            ]
            + [""]
        )
    if skipped:
        lines += (
            ["Skipped or failed cells:", ""]
            + [f"- `{k}`: {reason}" for k, reason in sorted(skipped.items())]
            + [""]
        )
    return lines


def variant_lines(b4):
    """The recipe choice: validation accuracy (%) of the default `guided`
    and of every `guided:<variant>` cell, per budget (test never read for
    the choice)."""
    rows = {}
    for key, point in b4.get("points", {}).items():
        method, budget, _ = key.split("|")
        if "val" in point and (
            method == "guided" or method.startswith("guided:")
        ):
            rows.setdefault(method, {}).setdefault(budget, []).append(
                100 * point["val"]
            )
    if len(rows) <= 1:
        return []
    budgets = [b for b in BUDGET_ORDER if any(b in r for r in rows.values())]
    specs = b4.get("variants", {})
    lines = [
        "### Recipe choice (validation)",
        "",
        "The recipe behind `guided` is chosen on the 5,000 validation "
        "images. Each variant changes one or two things (arguments of "
        "`GuidedPruning`, or the importance guidance knobs of "
        "`keras_guided.callbacks._importance`); validation accuracy (%) "
        "at the end of each cell, mean over the seeds run (in "
        "brackets):",
        "",
        "| recipe | changes | " + " | ".join(budgets) + " |",
        "|---|---|" + "---|" * len(budgets),
    ]
    order = sorted(rows, key=lambda m: (m != "guided", m))
    for method in order:
        spec = specs.get(method)
        what = (
            "the default"
            if method == "guided"
            else ", ".join(f"{k}={v!r}" for k, v in spec.items())
            if spec
            else ""
        )
        cells = []
        for budget in budgets:
            values = rows[method].get(budget)
            cells.append(
                f"{np.mean(values):.2f} ({len(values)})" if values else ""
            )
        lines.append(f"| `{method}` | {what} | " + " | ".join(cells) + " |")
    return lines + [""]


def _verdict(shortfall):
    """'reached' when `shortfall <= 0`, else 'not reached, by N points'."""
    if shortfall <= 1e-9:
        return "reached"
    return f"not reached, by {shortfall:.2f} points"


def _per_seed(b4):
    """`{method: {budget: {seed: test %}}}` of the grid methods, and the
    references' `{seed: test %}`."""
    cells = {}
    for method, budget, seed, point in _points(b4):
        cells.setdefault(method, {}).setdefault(budget, {})[seed] = (
            100 * point["test"]
        )
    refs = {
        seed: 100 * r["test"] for seed, r in b4.get("references", {}).items()
    }
    return cells, refs


def _seed_text(seeds):
    """'seeds 0-2', 'seeds 1-2', 'seed 0' or 'seeds 0, 2'."""
    seeds = sorted(int(s) for s in seeds)
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(str(s) for s in seeds)


def seed_sets(b4):
    """`[(label, seeds or None)]`: every seed, then (where the JSON names
    selection seeds) the seeds not used for any choice."""
    cells, refs = _per_seed(b4)
    every = set(refs) | {
        s for rows in cells.values() for r in rows.values() for s in r
    }
    chosen = {str(s) for s in b4.get("selection", {}).get("seeds", [])}
    if not every:
        return []
    out = [(_seed_text(every), None)]
    clean = every - chosen
    if chosen & every and clean:
        out.append(
            (f"{_seed_text(clean)} (not used for any choice)", sorted(clean))
        )
    return out


def _comparison(difference, peer):
    """'-0.29 [-1.14, +0.56], tie' over `difference`'s seeds."""
    if difference is None:
        return "not run"
    return f"{difference.text()}, {difference.verdict('guided', peer)}"


def paired_lines(b4):
    """The table of guided minus each peer, paired per seed, with the 95 %
    interval and the verdict, over every seed set of `seed_sets`."""
    cells, _ = _per_seed(b4)
    guided = cells.get("guided", {})
    sets = seed_sets(b4)
    if not guided or not sets:
        return []
    flagged = caveats(b4)
    lines = [
        "### Paired differences: guided minus each peer",
        "",
        "Test accuracy of guided minus the peer (points), per seed on the "
        "same reference, then the mean and its 95 % t-interval "
        "(`benchmarks/stats.py`): **tie** where the interval contains "
        "zero. One seed gives no interval.",
        "",
        "| budget | peer | " + " | ".join(label for label, _ in sets) + " |",
        "|---|---|" + "---|" * len(sets),
    ]
    for budget in _budgets(cells):
        if budget not in guided:
            continue
        for method in _methods(cells):
            rows = cells[method]
            if method == "guided" or budget not in rows:
                continue
            values = [
                _comparison(
                    stats.paired(guided[budget], rows[budget], seeds),
                    method,
                )
                for _, seeds in sets
            ]
            label = f"`{method}`" + (
                " (not counted: " + flagged[method].split(":")[0] + ")"
                if method in flagged
                else ""
            )
            lines.append(f"| {budget} | {label} | " + " | ".join(values) + " |")
    lines.append("")
    if flagged:
        lines += ["Arms not counted as peers:", ""]
        lines += [f"- `{m}`: {why}." for m, why in sorted(flagged.items())]
        lines.append("")
    return lines


def _over_sets(mine, other, peer, sets):
    """'<difference>, <verdict> over <seeds>; ...' for each seed set."""
    parts = []
    for label, seeds in sets:
        difference = stats.paired(mine, other, seeds)
        if difference is not None:
            parts.append(f"{_comparison(difference, peer)} over {label}")
    return "; ".join(parts)


def targets(b4):
    """The issue's goals, each judged on the paired differences over every
    seed set of `seed_sets`: a lead counts only where its interval
    excludes zero; arms in `caveats` are not counted as peers."""
    cells, refs = _per_seed(b4)
    guided = cells.get("guided", {})
    sets = seed_sets(b4)
    flagged = caveats(b4)
    lines = []
    half = guided.get("flops/2x")
    if half and stats.paired(half, refs):
        gap = -stats.paired(half, refs).mean
        lines.append(
            f"- At 2x fewer FLOPs, guided within {REFERENCE_TOLERANCE} "
            "points of its reference (guided minus reference: "
            f"{_over_sets(half, refs, 'reference', sets)}): "
            f"{_verdict(gap - REFERENCE_TOLERANCE)}"
        )
    for budget in _budgets(cells):
        guided_cells = guided.get(budget)
        if not guided_cells:
            continue
        peers = []
        for method, rows in cells.items():
            if method == "guided" or method in flagged or budget not in rows:
                continue
            difference = stats.paired(guided_cells, rows[budget])
            if difference is not None:
                peers.append((difference.mean, method, rows[budget]))
        if not peers:
            continue
        _, name, best = min(peers)
        ahead = [
            method
            for _, method, other in peers
            for _, seeds in sets
            if (d := stats.paired(guided_cells, other, seeds)) is not None
            and d.verdict("guided", method) == f"{method} ahead"
        ]
        lines.append(
            f"- {budget}: no counted peer ahead of guided with an interval "
            "excluding zero: "
            + (
                "reached"
                if not ahead
                else "not reached (" + ", ".join(sorted(set(ahead))) + ")"
            )
            + f". Closest peer on the mean, `{name}`: "
            + _over_sets(guided_cells, best, name, sets)
        )
        if budget == "flops/4x":
            lead = [
                d
                for _, seeds in sets
                if (d := stats.paired(guided_cells, best, seeds)) is not None
            ]
            met = all(
                not np.isnan(d.low)
                and d.low > 0
                and d.mean >= LEAD_AT_4X - 1e-9
                for d in lead
            )
            lines.append(
                f"- flops/4x: guided ahead of the best counted peer "
                f"(`{name}`) by >= {LEAD_AT_4X:g} point with an interval "
                "excluding zero: "
                + (
                    "reached"
                    if met
                    else "not reached ("
                    + _over_sets(guided_cells, best, name, sets)
                    + ")"
                )
            )
    return lines


OFF_SCALE_POINTS = 25.0


def plot(b4, path):
    """Test accuracy against FLOPs kept, one line per method (error bars:
    sample std over seeds, none for one seed), the reference as a dashed
    line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary(b4)
    ref = reference(b4)
    figure, axis = plt.subplots(figsize=(6, 4.5))
    # A method that collapsed (chance accuracy) would squeeze every other
    # line into a few pixels: it is named under the plot instead.
    floor = (ref["mean"] if ref else 100.0) - OFF_SCALE_POINTS
    off_scale = []
    for i, method in enumerate(_methods(table)):
        best = max(s["mean"] for s in table[method].values())
        if best < floor:
            off_scale.append(f"{method} (at most {best:.1f} %)")
            continue
        points = sorted(
            (s["flops_kept"], s["mean"], 0.0 if s["n"] < 2 else s["std"])
            for s in table[method].values()
        )
        x, y, e = zip(*points)
        axis.errorbar(
            x,
            y,
            yerr=e,
            marker="o",
            capsize=2,
            color=f"C{i}",
            label=method,
            linestyle="--" if method.startswith("tp_") else "-",
        )
    if ref:
        axis.axhline(
            ref["mean"], color="grey", linestyle=":", label="reference"
        )
    axis.set_xlabel("FLOPs kept (fraction of the reference)")
    axis.set_ylabel("test accuracy (%), mean ± sample std over seeds")
    schedule = b4.get("schedule", {})
    axis.set_title(
        f"CIFAR-10 {schedule.get('arch', '')}: accuracy vs FLOPs", fontsize=10
    )
    axis.legend(fontsize=7)
    if off_scale:
        figure.text(
            0.01,
            0.01,
            f"not drawn, more than {OFF_SCALE_POINTS:g} points below the "
            f"reference: {', '.join(off_scale)}",
            fontsize=7,
        )
    figure.tight_layout(rect=(0, 0.04 if off_scale else 0, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".tmp.png"
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, path)


def _schedule_text(b4):
    s = b4.get("schedule", {})
    settings = b4.get("settings", {})
    images = s.get("train_images") or "all 45,000"
    split = settings.get("split", [45000, 5000, 10000])
    return [
        f"Schedule: {s.get('arch')}, {images} training images per epoch "
        f"(a fresh seeded sample of the {split[0]:,}-image training split "
        f"each epoch; {split[1]:,} validation images, held out of the "
        f"training images, for every choice; {split[2]:,} test images read "
        "at the end of each cell), pad-4 random crop and "
        f"horizontal flip, batch {settings.get('batch_size')}. Reference: "
        f"{s.get('ref_epochs')} epochs, SGD (momentum "
        f"{settings.get('momentum')}, Nesterov, decoupled weight decay "
        f"{settings.get('weight_decay')}), cosine learning rate from "
        f"{s.get('ref_lr')}. Every method then gets {s.get('prune_epochs')} "
        f"pruning epochs and {s.get('finetune_epochs')} fine-tuning epochs "
        f"from the reference, cosine from {s.get('lr')} in each phase; "
        "fine-tuning is distillation from the reference (alpha "
        f"{settings.get('kd_alpha')}, temperature "
        f"{settings.get('kd_temperature')}; `keras_guided.Distiller` in "
        "Keras, the same loss in PyTorch), keeping the epoch (0 to all) "
        "with the best validation accuracy.",
        "",
        "Torch-Pruning's published CIFAR-10 result is on ResNet-56 with "
        "all 50,000 training images, 100 epochs of sparsity learning "
        "(`GroupNormPruner`, reg 5e-4, lr 0.01 with steps at 60/80) and 100 "
        "epochs of fine-tuning. This schedule is much shorter (a few "
        "epochs per phase on a ResNet-20, sized for 2 CPU cores), uses "
        "cosine instead of step learning rates and distillation instead of "
        "plain fine-tuning, for every arm alike; `--schedule tp-published` "
        "runs the published lengths (ResNet-56, 100 + 100 epochs) with the "
        "same code.",
        "",
        "Command: `python -m benchmarks.b4_cifar --cifar-dir "
        "../shared/data/cifar10-jpeg --json <b4.json>` (resumable; see "
        "`benchmarks/README.md`).",
        "",
        "Both arms see the same batches in the same order "
        "(`benchmarks/cifar.py`, seeded numpy). The Torch-Pruning arm runs "
        "in its own process (torch "
        f"{_first(b4, 'torch_version')}, torch-pruning "
        f"{_first(b4, 'torch_pruning_version')}) on the reference "
        "weights ported to PyTorch (logits checked on 64 test images), "
        "prunes to the MACs budget with global pruning stepped until the "
        "MACs kept are at most the budget, and its result is ported back "
        "to Keras (logits checked again): FLOPs and params of every arm "
        "are counted by `keras_guided.count_flops` / `count_params` on the "
        "Keras model.",
        "",
    ]


def _progress(b4):
    """How much of the schedule's grid the JSON holds, and the machine."""
    schedule = b4.get("schedule", {})
    seeds = len(schedule.get("seeds", [])) or 1
    budgets = len(schedule.get("budgets", BUDGET_ORDER))
    total = seeds * budgets * len(METHODS)
    done = sum(
        "test" in p
        for k, p in b4.get("points", {}).items()
        if ":" not in k.split("|")[0]
    )
    lines = [
        f"Cells done: {done} of {total} ({seeds} seed(s) x {budgets} "
        f"budgets x {len(METHODS)} methods); a rerun of the same "
        "command resumes the grid.",
        "",
    ]
    machine = b4.get("machine")
    if machine:
        lines += [
            f"Machine: {machine.get('nproc')} CPU(s), "
            f"{machine.get('cpu')}, shared with other work (wall "
            "times are upper bounds).",
            "",
        ]
    return lines


def _first(b4, key):
    for point in b4.get("points", {}).values():
        if key in point:
            return point[key]
    return "?"


def reading_note(b4):
    """What the section can and cannot show, from the JSON: the schedule
    against the reference's published accuracy, whether the fine-tune was
    still rising, the epochs each arm trains at its final widths, and the
    seeds used to choose the recipe."""
    schedule = b4.get("schedule", {})
    prune, tune = schedule.get("prune_epochs"), schedule.get("finetune_epochs")
    images = schedule.get("train_images") or "all 45,000"
    ref = reference(b4)
    flagged = caveats(b4)
    text = "**A short schedule.** "
    if ref:
        text += f"The references reach {ref['mean']:.2f} % test"
        published = PUBLISHED_REFERENCE.get(schedule.get("arch"))
        if published:
            text += (
                f" ({schedule.get('arch')} reaches {published:.2f} % with "
                "its full schedule, He et al., 2016: these references are "
                "undertrained)"
            )
        text += "; "
    text += (
        f"every method then gets {prune} pruning and {tune} fine-tuning "
        f"epochs of {images:,} images."
        if isinstance(images, int)
        else f"every method then gets {prune} pruning and {tune} "
        f"fine-tuning epochs of {images} images."
    )
    chosen = [
        p.get("finetune_epoch_chosen")
        for method, _, _, p in _points(b4)
        if method not in flagged or not flagged[method].startswith("coll")
    ]
    chosen = [c for c in chosen if c is not None]
    if chosen and tune:
        last = sum(c == tune for c in chosen)
        text += (
            f" The fine-tune kept its last epoch in {last} of "
            f"{len(chosen)} cells (collapsed arms left out): accuracy was "
            "still rising when the cells ended."
        )
    landed = [
        p["controller"]["landed_at_epoch"]
        for method, _, _, p in _points(b4)
        if method == "guided"
        and p.get("controller", {}).get("landed_at_epoch") is not None
    ]
    if prune and tune is not None:
        text += (
            " Arms that cut first train at their final widths for all "
            f"{prune + tune} epochs"
        )
        if landed:
            text += (
                f", guided for {prune - np.mean(landed) - 1 + tune:.0f} "
                "(it lands on the budget at the end of pruning epoch "
                f"{np.mean(landed) + 1:.0f})"
            )
        text += f", `tp_group_sl` for the {tune} fine-tuning epochs."
    text += (
        " Recovery this cheap from a reference this weak cannot show "
        "whether keeping the network's function through the cut (the "
        "after-cut columns: guided near its final accuracy, the one-shot "
        "arms near chance) pays off; B6 starts from strong references for "
        "that."
    )
    lines = [text, ""]
    selection = b4.get("selection", {})
    sets = seed_sets(b4)
    if selection.get("seeds") and len(sets) > 1:
        lines += [
            "**Selection seed.** "
            f"{_seed_text(selection['seeds']).capitalize()}: "
            f"{selection.get('why', 'used to choose the recipe')}. Each "
            f"comparison is shown over {sets[0][0]} and over {sets[1][0]}.",
            "",
        ]
    return lines


def section(b4, plot_name=PLOT_NAME):
    """The `## B4` section of the benchmarks page."""
    descriptions = b4.get("descriptions", {})
    present = {k.split("|")[0] for k in b4.get("points", {})}
    lines = [
        "## B4: CIFAR-10 short schedule, side by side with Torch-Pruning",
        "",
    ]
    lines += reading_note(b4)
    lines += _schedule_text(b4)
    lines += ["| method | what |", "|---|---|"]
    for method in METHODS:
        if method in present:
            text = descriptions.get(method, "").replace("|", "\\|")
            lines.append(f"| `{method}` | {text} |")
    lines.append("")
    lines += markdown(b4)
    lines += paired_lines(b4)
    lines += variant_lines(b4)
    lines += ["### B4 targets", ""] + targets(b4) + [""]
    lines += _progress(b4)
    if plot_name:
        lines += [f"![CIFAR-10 accuracy vs FLOPs]({plot_name})", ""]
    lines += [f"Raw numbers: `{JSON_NAME}` next to this page.", ""]
    return "\n".join(lines) + "\n"


def _without_local_paths(b4):
    """`b4` with each reference's weights file named by its file name only
    (the folder is the machine's cache, not part of the result)."""
    b4 = json.loads(json.dumps(b4))
    for reference in b4.get("references", {}).values():
        if isinstance(reference, dict) and reference.get("path"):
            reference["path"] = os.path.basename(reference["path"])
    return b4


def write_docs(b4, page):
    """Writes the JSON and the plot next to `page` and replaces its `## B4`
    section (up to the next `## ` heading), or appends one."""
    folder = os.path.dirname(os.path.abspath(page))
    report.write_atomic(
        os.path.join(folder, JSON_NAME),
        json.dumps(_without_local_paths(b4), indent=1),
    )
    plot(b4, os.path.join(folder, PLOT_NAME))
    text = ""
    if os.path.exists(page):
        with open(page) as f:
            text = f.read()
    report.write_atomic(page, replace_section(text, section(b4)))


def replace_section(text, new, heading="## B4"):
    start = text.find("\n" + heading)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + new
    start += 1
    end = text.find("\n## ", start + 1)
    end = len(text) if end < 0 else end + 1
    return text[:start] + new + ("\n" if end < len(text) else "") + text[end:]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b4_report")
    parser.add_argument("--json", required=True)
    parser.add_argument(
        "--docs", default=None, help="page whose B4 section to regenerate"
    )
    parser.add_argument(
        "--md", default=None, help="also write the section alone to this file"
    )
    parser.add_argument(
        "--plot", default=None, help="also write the plot to this file"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    with open(args.json) as f:
        b4 = json.load(f)
    if args.docs:
        write_docs(b4, args.docs)
    if args.md:
        report.write_atomic(args.md, section(b4, None))
    if args.plot:
        plot(b4, args.plot)
    if not (args.docs or args.md or args.plot):
        print(section(b4, None))


if __name__ == "__main__":
    main()
