"""B4 report: markdown tables, targets, the plot and the docs section.

    python -m benchmarks.b4_report --json /path/to/b4.json \\
        [--docs docs/benchmarks.md] [--md out.md]

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


def summary(b4):
    """`{method: {budget: stats}}`, stats in percent (test, val after cut,
    test after cut) and means of FLOPs kept, params, seconds."""
    rows = {}
    for key, point in b4.get("points", {}).items():
        if "test" not in point:
            continue
        method, budget, seed = key.split("|")
        if ":" in method:
            continue  # a recipe variant: see `variant_lines`
        rows.setdefault(method, {}).setdefault(budget, []).append(point)
    out = {}
    for method, budgets in rows.items():
        for budget, points in budgets.items():
            test = np.array([p["test"] for p in points]) * 100
            out.setdefault(method, {})[budget] = {
                "mean": float(test.mean()),
                "std": float(test.std()),
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
        "std": float(test.std()),
        "n": len(refs),
        "flops": refs[0]["flops"],
        "params": refs[0]["params"],
        "seconds": float(np.mean([r["seconds"] for r in refs])),
    }


def _budgets(table):
    present = {b for rows in table.values() for b in rows}
    return [b for b in BUDGET_ORDER if b in present] + sorted(
        present - set(BUDGET_ORDER)
    )


def _methods(table):
    return [m for m in METHODS if m in table] + sorted(
        set(table) - set(METHODS)
    )


def markdown(b4):
    """The tables: test accuracy per method and budget, then one detail
    table per budget."""
    table = summary(b4)
    ref = reference(b4)
    budgets = _budgets(table)
    lines = []
    if ref:
        lines += [
            f"Reference: {ref['params']:,} params, {ref['flops']:,} "
            f"FLOPs, test {ref['mean']:.2f} ± {ref['std']:.2f} % "
            f"({ref['n']} seed(s)), trained in "
            f"{ref['seconds'] / 60:.0f} min.",
            "",
        ]
    lines += [
        "Test accuracy (%), mean ± std over seeds (seeds in brackets); "
        "**bold**: best mean at the budget.",
        "",
        "| method | " + " | ".join(budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    best = {}
    for budget in budgets:
        values = [
            (rows[budget]["mean"], m)
            for m, rows in table.items()
            if budget in rows
        ]
        best[budget] = max(values)[1]
    for method in _methods(table):
        cells = []
        for budget in budgets:
            s = table[method].get(budget)
            if s is None:
                cells.append("")
                continue
            text = f"{s['mean']:.2f} ± {s['std']:.2f} ({s['n']})"
            cells.append(f"**{text}**" if best[budget] == method else text)
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
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
                f"| `{method}` | {s['mean']:.2f} ± {s['std']:.2f} | "
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


def _seeds_note(n):
    return (
        ""
        if n >= SEEDS_WANTED
        else (f" [{n} of {SEEDS_WANTED} seeds so far, the seeds both have]")
    )


def _per_seed(b4):
    """`{method: {budget: {seed: test %}}}` of the grid methods, and the
    references' `{seed: test %}`."""
    cells = {}
    for key, point in b4.get("points", {}).items():
        method, budget, seed = key.split("|")
        if "test" in point and ":" not in method:
            cells.setdefault(method, {}).setdefault(budget, {})[seed] = (
                100 * point["test"]
            )
    refs = {
        seed: 100 * r["test"] for seed, r in b4.get("references", {}).items()
    }
    return cells, refs


def _paired(first, second):
    """Means of `first` and `second` (`{seed: value}`) over the seeds both
    have, and how many those are."""
    seeds = sorted(set(first) & set(second))
    if not seeds:
        return None
    return (
        float(np.mean([first[s] for s in seeds])),
        float(np.mean([second[s] for s in seeds])),
        len(seeds),
    )


def targets(b4):
    """The issue's goals, each line 'reached' or 'not reached, by N
    points' (test accuracy). Each comparison is over the seeds both sides
    have, so a method with fewer seeds done is compared fairly."""
    cells, refs = _per_seed(b4)
    guided = cells.get("guided", {})
    lines = []
    half = guided.get("flops/2x")
    pair = half and _paired(half, refs)
    if pair:
        mine, ref, n = pair
        gap = ref - mine
        lines.append(
            f"- At 2x fewer FLOPs, guided within {REFERENCE_TOLERANCE} "
            f"points of its reference: {mine:.2f} vs {ref:.2f} ("
            + (f"{gap:.2f} below" if gap >= 0 else f"{-gap:.2f} above")
            + f"): {_verdict(gap - REFERENCE_TOLERANCE)}"
            + _seeds_note(n)
        )
    for budget in _budgets(summary(b4)):
        point = guided.get(budget)
        if not point:
            continue
        pair = _paired(point, cells.get("tp_group_sl", {}).get(budget, {}))
        if pair:
            mine, tp, n = pair
            lines.append(
                f"- {budget}: guided >= Torch-Pruning group_sl: "
                f"{mine:.2f} vs {tp:.2f}: {_verdict(tp - mine)}"
                + _seeds_note(n)
            )
        others = []
        for method, rows in cells.items():
            pair = (
                method != "guided"
                and budget in rows
                and _paired(point, rows[budget])
            )
            if pair:
                others.append((pair[1] - pair[0], method, pair))
        if others:
            _, name, (mine, top, n) = max(others)
            lines.append(
                f"- {budget}: guided >= every baseline (best: {name} "
                f"{top:.2f}): {mine:.2f}: {_verdict(top - mine)}"
                + _seeds_note(n)
            )
            if budget == "flops/4x":
                lines.append(
                    f"- flops/4x: guided ahead of the best baseline by >= "
                    f"{LEAD_AT_4X:g} point ({name} {top:.2f}): "
                    f"{mine:.2f}, {mine - top:+.2f}: "
                    f"{_verdict(top + LEAD_AT_4X - mine)}" + _seeds_note(n)
                )
    return lines


OFF_SCALE_POINTS = 25.0


def plot(b4, path):
    """Test accuracy against FLOPs kept, one line per method (error bars:
    std over seeds), the reference as a dashed line."""
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
            (s["flops_kept"], s["mean"], s["std"])
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
    axis.set_ylabel("test accuracy (%), mean ± std over seeds")
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


def section(b4, plot_name=PLOT_NAME):
    """The `## B4` section of the benchmarks page."""
    descriptions = b4.get("descriptions", {})
    present = {k.split("|")[0] for k in b4.get("points", {})}
    lines = ["## B4: CIFAR-10, side by side with Torch-Pruning", ""]
    lines += _schedule_text(b4)
    lines += ["| method | what |", "|---|---|"]
    for method in METHODS:
        if method in present:
            text = descriptions.get(method, "").replace("|", "\\|")
            lines.append(f"| `{method}` | {text} |")
    lines.append("")
    lines += markdown(b4)
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
