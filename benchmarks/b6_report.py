"""B6 report: the page section generated from `docs/benchmarks_b6.json`.

    python -m benchmarks.b6_report [--json docs/benchmarks_b6.json] \\
        [--docs docs/benchmarks.md] [--md out.md]

The JSON alone holds what the page shows (no CIFAR data, no training):

    {"references": [{"arch", "seed", "val", "test", "epochs"}],
     "cells": [{"arch", "budget", "method", "variant", "seed", "role",
                "extra_epochs", "val", "test", "after_cut_val",
                "after_cut_test", "flops_kept", "params"}]}

accuracies as fractions, `budget` as `"flops/2x"`, `role` `"tune"` (a
variant tried on validation, on a tuning seed) or `"test"` (a seed not
used for any choice). The section lists the methods (and the ones left
out, with the reason), shows the references per seed with the mean and
sample std over the test seeds, judges the benchmark's goals on the test
seeds (met, missed with the numbers, or not measured yet); then, per
budget and extra-epoch budget, every method's mean test accuracy over its
test cells and its paired difference from guided per seed with the 95 %
t-interval (`benchmarks.stats`), a tie where the interval contains zero;
then the tuning cells' validation accuracy, the chosen variants marked.
Cells not in the JSON yet read "not run yet", so a partial or empty JSON
makes a page.

With `--docs`, the page's region between `<!-- b6:begin -->` and
`<!-- b6:end -->` is replaced (a `## B6` section with the markers is
appended when the page has none). A missing `--json` file is created empty.
"""

import argparse
import json
import os
import sys

import numpy as np

from benchmarks import b6_protocol as protocol
from benchmarks import report
from benchmarks import stats

HEADING = "## B6: CIFAR-10 from strong references"
BEGIN = "<!-- b6:begin -->"
END = "<!-- b6:end -->"
JSON_NAME = "benchmarks_b6.json"
BUDGET_ORDER = ("flops/2x", "flops/3x", "flops/4x")
NOT_RUN = "not run yet"
NOT_MEASURED = "not measured yet (no test cells)"
#: The references' goal: test accuracy, mean over the test seeds.
REFERENCE_GOAL = {"resnet20": 0.91}
#: The short and the standard extra-epoch budgets the goals speak of.
SHORT_EPOCHS = 2
STANDARD_EPOCHS = 8
#: Points: guided's test accuracy at 2x and E=8 may trail its reference by
#: at most this; right after its cut at 2x, by at most `AFTER_CUT_GAP`;
#: at 3x and 4x with E=2 it should lead the best peer by `LEAD`.
REFERENCE_GAP = 0.5
AFTER_CUT_GAP = 1.0
LEAD = 1.0
TEST_SEEDS = 3  # the "at least 3" seeds not used for any choice


def empty():
    return {"references": [], "cells": []}


def load(path):
    """The B6 results at `path`, or an empty result when there is none."""
    if not os.path.exists(path):
        return empty()
    with open(path) as f:
        b6 = json.load(f)
    b6.setdefault("references", [])
    b6.setdefault("cells", [])
    return b6


def _percent(value):
    return "" if value is None else f"{100 * value:.2f}"


def _mean_std(values):
    """'91.20 ± 0.15' (sample std) or '91.20' for one value, in percent."""
    values = 100 * np.asarray(values, dtype="float64")
    if values.size == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} ± {stats.sample_std(values):.2f}"


def _seed_list(seeds):
    seeds = sorted(seeds)
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(
        str(s) for s in seeds
    )


def _archs(b6):
    seen = []
    for row in b6["references"] + b6["cells"]:
        if row["arch"] not in seen:
            seen.append(row["arch"])
    return seen


def tuning_seeds(b6, arch):
    """Seeds of `arch` used for a choice: those with a tuning cell, and
    those the JSON's settings name (`tune_seeds`)."""
    named = b6.get("settings", {}).get("tune_seeds", [])
    return set(named) | {
        c["seed"]
        for c in b6["cells"]
        if c["arch"] == arch and c.get("role") == "tune"
    }


def method_lines(b6):
    """The methods (from the JSON's `descriptions`, with their variants'
    count) and the methods left out, each with its reason."""
    lines = []
    variants = b6.get("variants", {})
    for method, text in b6.get("descriptions", {}).items():
        tried = len(variants.get(method, {}))
        more = f" ({tried} variants to tune)" if tried > 1 else ""
        lines.append(f"- `{method}`{more}: {text}.")
    for method, reason in b6.get("left_out", {}).items():
        lines.append(f"- `{method}`: **left out**: {reason}.")
    return lines + [""] if lines else []


def _weights(row):
    """A reference row's weights hash, short, or what stands for none."""
    sha = row.get("weights_sha256")
    return f"`{sha[:8]}`" if sha else "not recorded"


def _reference_of(b6, cell):
    """The reference row a cell started from: its arch and seed, and the
    weights it names (a cell naming none, from before cells named them,
    goes with the row naming none); None when the JSON lacks it."""
    for r in b6["references"]:
        if (r["arch"], r["seed"]) == (cell["arch"], cell["seed"]) and r.get(
            "weights_sha256"
        ) == cell.get("reference_sha256"):
            return r
    return None


def _reference_tests(b6, seeds):
    """`{seed: points}`: the test accuracy of the reference each cell of
    `{seed: cell}` started from."""
    out = {}
    for seed, cell in seeds.items():
        ref = _reference_of(b6, cell)
        if ref is not None and ref.get("test") is not None:
            out[seed] = 100 * ref["test"]
    return out


def _later_training(b6, cell):
    """Whether a cell started from a training of its seed's reference
    other than the first one the JSON records."""
    first = next(
        (
            r
            for r in b6["references"]
            if (r["arch"], r["seed"]) == (cell["arch"], cell["seed"])
        ),
        None,
    )
    return first is not None and first is not _reference_of(b6, cell)


def trainings_lines(b6):
    """A loud line per seed whose reference was trained more than once
    (its weights lost with a machine), with the cells from each training,
    and one for cells whose reference is not in the JSON."""
    lines = []
    seen = {}
    for r in b6["references"]:
        seen.setdefault((r["arch"], r["seed"]), []).append(r)
    for (arch, seed), rows in sorted(seen.items()):
        if len(rows) < 2:
            continue
        counts = [
            sum(1 for c in b6["cells"] if _reference_of(b6, c) is r)
            for r in rows
        ]
        trainings = "; ".join(
            f"weights {_weights(r)}: val {_percent(r.get('val'))} %, test "
            f"{_percent(r.get('test'))} %, {n} cell(s)"
            for r, n in zip(rows, counts)
        )
        lines += [
            f"**{arch}, seed {seed}: its reference was trained "
            f"{len(rows)} times** ({trainings}). Each cell names the "
            "weights it started from (`reference_sha256`); compare cells "
            "only within one training (entries marked † in the tuning "
            "table come from a later one).",
            "",
        ]
    orphans = [c for c in b6["cells"] if _reference_of(b6, c) is None]
    if orphans:
        lines += [
            f"**{len(orphans)} cell(s) name a reference that is not in the "
            "JSON**: they are shown, but nothing here pairs them with a "
            "reference.",
            "",
        ]
    return lines


def reference_lines(b6):
    """A table of the references per seed, and the mean and sample std of
    the test accuracy over the seeds not used for any choice."""
    if not b6["references"]:
        return ["References: " + NOT_RUN + ".", ""]
    lines = [
        "| arch | seed | role | epochs | val % | test % | weights |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = []
    for arch in _archs(b6):
        tuning = tuning_seeds(b6, arch)
        rows = sorted(
            (r for r in b6["references"] if r["arch"] == arch),
            key=lambda r: r["seed"],
        )
        for r in rows:
            role = "tuning" if r["seed"] in tuning else "test"
            lines.append(
                f"| {arch} | {r['seed']} | {role} | {r.get('epochs', '')} | "
                f"{_percent(r.get('val'))} | {_percent(r.get('test'))} | "
                f"{_weights(r)} |"
            )
        tests = [r for r in rows if r["seed"] not in tuning]
        if tests:
            summary.append(
                f"{arch}: test {_mean_std([r['test'] for r in tests])} % "
                f"over the test {_seed_list([r['seed'] for r in tests])} "
                f"(mean ± sample std, n = {len(tests)})."
            )
        summary += _goal_line(arch, rows, tests)
    return lines + [""] + summary + [""] + trainings_lines(b6)


def _goal_verdict(arch, rows, tests):
    """Whether the references meet `REFERENCE_GOAL`, with the numbers
    (None when there is no goal or no reference)."""
    goal = REFERENCE_GOAL.get(arch)
    if goal is None or not rows:
        return None
    if tests:
        mean = float(np.mean([r["test"] for r in tests]))
        verdict = "met" if mean >= goal else "**missed**"
        return f"{verdict} ({_percent(mean)} %)."
    below = [r for r in rows if r["test"] < goal]
    if not below:
        return "no test seed yet."
    seeds = ", ".join(
        f"{_percent(r['test'])} % on seed {r['seed']}" for r in below
    )
    return (
        "no test seed yet, and the recipe ends below it on the tuning seed "
        f"({seeds}, after {rows[0].get('epochs')} epochs)."
    )


def _goal_line(arch, rows, tests):
    """The references' goal line, or none."""
    verdict = _goal_verdict(arch, rows, tests)
    if verdict is None:
        return []
    goal = _percent(REFERENCE_GOAL[arch])
    return [
        f"{arch}: the goal is {goal} % test, mean over the test seeds: "
        f"{verdict}"
    ]


def _test_cells(b6, arch):
    """`{(budget, extra_epochs): {(method, variant): {seed: cell}}}`."""
    out = {}
    for c in b6["cells"]:
        if c["arch"] == arch and c.get("role") == "test":
            key = (c["budget"], c["extra_epochs"])
            row = (c["method"], c.get("variant") or "")
            out.setdefault(key, {}).setdefault(row, {})[c["seed"]] = c
    return out


def _budgets(present):
    return [b for b in BUDGET_ORDER if b in present] + sorted(
        set(present) - set(BUDGET_ORDER)
    )


def _methods(cells):
    methods = sorted({c["method"] for c in cells})
    return (["guided"] if "guided" in methods else []) + [
        m for m in methods if m != "guided"
    ]


def _guided_row(b6, budget, extra, rows):
    """guided's test row at `(budget, extra)`: the variant the JSON's
    `chosen` names when it has test cells there, else the row with the
    most seeds (then the first variant)."""
    guided = [(k, v) for k, v in rows.items() if k[0] == "guided"]
    if not guided:
        return None
    chosen = _chosen(b6, "guided", budget, extra)
    for key, seeds in guided:
        if key[1] == chosen:
            return key, seeds
    return min(guided, key=lambda kv: (-len(kv[1]), kv[0][1]))


def _variant_label(b6, method, budget, extra, variant):
    """`variant`, marked when `chosen` names another one for the cell (a
    test row left from an earlier choice)."""
    chosen = _chosen(b6, method, budget, extra)
    if chosen is not None and variant and variant != chosen:
        return f"{variant} (earlier choice; now {chosen})"
    return variant


def _row_line(method, variant, seeds, guided, label=None):
    tests = [c["test"] for c in seeds.values()]
    after = [
        c["after_cut_test"]
        for c in seeds.values()
        if c.get("after_cut_test") is not None
    ]
    kept = [c["flops_kept"] for c in seeds.values() if c.get("flops_kept")]
    params = [c["params"] for c in seeds.values() if c.get("params")]
    if method == "guided" and guided and variant == guided[0][1]:
        difference = "(the baseline of the comparison)"
    elif guided is None:
        difference = "no guided cells yet"
    else:
        paired = stats.paired(_test_values(guided[1]), _test_values(seeds))
        difference = (
            "no common seed"
            if paired is None
            else f"{paired.text()}, {paired.verdict('guided', method)} "
            f"({_seed_list(paired.seeds)})"
        )
    cells = [
        f"`{method}`",
        variant if label is None else label,
        _mean_std(tests),
        str(len(tests)),
        _mean_std(after) if after else "",
        f"{np.mean(kept):.3f}" if kept else "",
        f"{np.mean(params):,.0f}" if params else "",
        difference,
    ]
    return "| " + " | ".join(cells) + " |"


def grid_lines(b6):
    """Per arch, budget and extra epochs: the test table of every method,
    with guided's paired difference and verdict."""
    lines = []
    for arch in _archs(b6):
        cells = [c for c in b6["cells"] if c["arch"] == arch]
        if not cells:
            continue
        grid = _test_cells(b6, arch)
        budgets = _budgets({c["budget"] for c in cells} | set(BUDGET_ORDER))
        extras = sorted({c["extra_epochs"] for c in cells})
        methods = _methods(cells)
        for budget in budgets:
            for extra in extras:
                rows = grid.get((budget, extra), {})
                guided = _guided_row(b6, budget, extra, rows)
                lines += [
                    f"#### {arch}, {budget}, {extra} extra epochs",
                    "",
                    "| method | variant | test % | n | after cut test % | "
                    "FLOPs kept | params | guided minus method [95 % "
                    "interval], verdict |",
                    "|---|---|---|---|---|---|---|---|",
                ]
                for method in methods:
                    mine = sorted(
                        (k, v) for k, v in rows.items() if k[0] == method
                    )
                    if not mine:
                        lines.append(
                            f"| `{method}` | | {NOT_RUN} | 0 | | | | |"
                        )
                    for (_, variant), seeds in mine:
                        label = _variant_label(
                            b6, method, budget, extra, variant
                        )
                        lines.append(
                            _row_line(method, variant, seeds, guided, label)
                        )
                refs = _reference_tests(b6, guided[1]) if guided else {}
                if refs:
                    lines += [
                        "",
                        f"Reference over guided's {_seed_list(sorted(refs))}"
                        f": {_mean_std([refs[s] / 100 for s in sorted(refs)])}"
                        " %.",
                    ]
                lines.append("")
    if not lines:
        return ["Grid cells: " + NOT_RUN + ".", ""]
    return lines


def _label(method, variant):
    """'`method` variant', or '`method`' without a variant."""
    return f"`{method}` {variant}".rstrip()


def _test_values(seeds, key="test"):
    """`{seed: points}` of a test row (cells missing `key` left out)."""
    return {s: 100 * c[key] for s, c in seeds.items() if c.get(key) is not None}


def _versus_reference(b6, grid, budget, key, gap, epochs=None):
    """A goal line: guided's `key` at `budget` minus the reference's test
    accuracy, paired per test seed, per extra-epoch budget (only `epochs`
    when given)."""
    parts = []
    for (cell_budget, extra), rows in sorted(grid.items()):
        guided = _guided_row(b6, cell_budget, extra, rows)
        if cell_budget != budget or guided is None:
            continue
        if epochs is not None and extra != epochs:
            continue
        refs = _reference_tests(b6, guided[1])
        paired = stats.paired(_test_values(guided[1], key), refs)
        if paired is None:
            continue
        verdict = "met" if paired.mean >= -gap else "**missed**"
        parts.append(
            f"E={extra}: guided minus reference {paired.text()} points "
            f"({_seed_list(paired.seeds)}): {verdict}"
        )
    return "; ".join(parts) if parts else NOT_MEASURED


def _peers_ahead(b6, grid, methods=()):
    """Per (budget, E) with guided test cells: the peers whose paired
    interval lies below zero (ahead of guided), the combinations measured,
    and what is still thin there: a peer of `methods` not run, or paired
    with guided on fewer than `TEST_SEEDS` seeds."""
    ahead, measured, thin = [], [], []
    for (budget, extra), rows in sorted(grid.items()):
        guided = _guided_row(b6, budget, extra, rows)
        if guided is None:
            continue
        measured.append(f"{budget} E={extra}")
        for method in methods:
            if method != "guided" and not any(k[0] == method for k in rows):
                thin.append(f"`{method}` not run at {budget} E={extra}")
        for (method, variant), seeds in sorted(rows.items()):
            if method == "guided":
                continue
            paired = stats.paired(_test_values(guided[1]), _test_values(seeds))
            if paired is not None and paired.high < 0:
                ahead.append(
                    f"{_label(method, variant)} at {budget} E={extra} "
                    f"({paired.text()})"
                )
            count = len(paired.seeds) if paired is not None else 0
            if count < TEST_SEEDS:
                thin.append(
                    f"{_label(method, variant)} at {budget} E={extra} on "
                    f"{count} common seed{'s' if count != 1 else ''}"
                )
    return ahead, measured, thin


def _lead_over_best_peer(b6, grid, budget):
    """Guided minus the peer with the highest mean test accuracy at
    `budget` and the short extra-epoch budget, with the verdict."""
    rows = grid.get((budget, SHORT_EPOCHS), {})
    guided = _guided_row(b6, budget, SHORT_EPOCHS, rows)
    peers = [
        (np.mean(list(_test_values(seeds).values())), method, variant, seeds)
        for (method, variant), seeds in rows.items()
        if method != "guided" and _test_values(seeds)
    ]
    if guided is None or not peers:
        return f"{budget}: {NOT_MEASURED}"
    _, method, variant, seeds = max(peers, key=lambda p: p[0])
    paired = stats.paired(_test_values(guided[1]), _test_values(seeds))
    if paired is None:
        return f"{budget}: {NOT_MEASURED} (no common seed)"
    met = paired.mean >= LEAD and paired.low > 0
    return (
        f"{budget}: guided minus {_label(method, variant)} {paired.text()} "
        "points "
        f"({_seed_list(paired.seeds)}): " + ("met" if met else "**missed**")
    )


def goal_lines(b6):
    """The issue's goals, each judged on the test seeds from the JSON:
    met, **missed** (with the numbers) or not measured yet."""
    lines = []
    for arch in _archs(b6):
        grid = _test_cells(b6, arch)
        rows = [r for r in b6["references"] if r["arch"] == arch]
        tuning = tuning_seeds(b6, arch)
        tests = [r for r in rows if r["seed"] not in tuning]
        reference = _goal_verdict(arch, rows, tests)
        methods = _methods([c for c in b6["cells"] if c["arch"] == arch])
        ahead, measured, thin = _peers_ahead(b6, grid, methods)
        wanted = len(BUDGET_ORDER) * 2
        if ahead:
            peers = "**missed**: " + "; ".join(ahead)
        elif measured:
            peers = ("met so far on " if thin else "met on ") + ", ".join(
                measured
            )
            if len(measured) < wanted:
                peers += f" ({len(measured)} of {wanted} measured)"
            if thin:
                peers += "; **still thin**: " + "; ".join(thin)
        else:
            peers = NOT_MEASURED
        lines += [
            f"{arch}, on the test seeds only:",
            "",
            "- references at least "
            f"{_percent(REFERENCE_GOAL.get(arch, float('nan')))} % test: "
            + (reference or NOT_MEASURED),
            f"- at 2x with {STANDARD_EPOCHS} extra epochs, guided within "
            f"{REFERENCE_GAP} points of its reference: "
            + _versus_reference(
                b6,
                grid,
                "flops/2x",
                "test",
                REFERENCE_GAP,
                epochs=STANDARD_EPOCHS,
            ),
            "- no peer ahead of guided with an interval that excludes "
            f"zero, at every budget and both extra-epoch budgets: {peers}",
            f"- with {SHORT_EPOCHS} extra epochs at 3x and 4x, guided "
            f"ahead of the best peer by at least {LEAD} point, interval "
            "excluding zero: "
            + "; ".join(
                _lead_over_best_peer(b6, grid, b)
                for b in ("flops/3x", "flops/4x")
            ),
            f"- right after the cut at 2x, guided within {AFTER_CUT_GAP} "
            "point of its reference: "
            + _versus_reference(
                b6,
                grid,
                "flops/2x",
                "after_cut_test",
                AFTER_CUT_GAP,
            ),
            "",
        ]
    return lines


def _chosen(b6, method, budget, extra):
    """The variant the JSON's `chosen` names for the cell, or None."""
    chosen = b6.get("chosen") or {}
    key = protocol.chosen_key(method, budget, extra, chosen)
    return None if key is None else chosen[key]


def tuning_lines(b6):
    """Per arch, the validation accuracy of every tuned variant, mean over
    its tuning seeds, per budget and extra epochs; '**chosen**' marks the
    variant `CHOSEN` names for the test seeds, '(tested)' the variants
    that went on to them."""
    lines = []
    for arch in _archs(b6):
        tune = [
            c
            for c in b6["cells"]
            if c["arch"] == arch and c.get("role") == "tune"
        ]
        if not tune:
            continue
        tested = {
            (
                c["budget"],
                c["extra_epochs"],
                c["method"],
                c.get("variant") or "",
            )
            for c in b6["cells"]
            if c["arch"] == arch and c.get("role") == "test"
        }
        present = {(c["budget"], c["extra_epochs"]) for c in tune}
        columns = [
            (budget, extra)
            for budget in _budgets({b for b, _ in present})
            for extra in sorted({e for _, e in present})
            if (budget, extra) in present
        ]
        lines += [
            f"#### {arch}: tuning (validation %, mean over tuning seeds, "
            "n in brackets; then right after the cut)",
            "",
            "| method | variant | "
            + " | ".join(f"{b}, {e} extra" for b, e in columns)
            + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        rows = sorted({(c["method"], c.get("variant") or "") for c in tune})
        for method, variant in rows:
            values = []
            for budget, extra in columns:
                cells = [
                    c
                    for c in tune
                    if (c["method"], c.get("variant") or "")
                    == (method, variant)
                    and (c["budget"], c["extra_epochs"]) == (budget, extra)
                ]
                vals = [c["val"] for c in cells]
                text = (
                    f"{100 * np.mean(vals):.2f} ({len(vals)}); "
                    f"{100 * np.mean([c['after_cut_val'] for c in cells]):.2f}"
                    if vals
                    else ""
                )
                if vals and _chosen(b6, method, budget, extra) == variant:
                    text += " **chosen**"
                if vals and (budget, extra, method, variant) in tested:
                    text += " (tested)"
                if any(_later_training(b6, c) for c in cells):
                    text += " †"
                values.append(text)
            lines.append(
                f"| `{method}` | {variant} | " + " | ".join(values) + " |"
            )
        lines.append("")
    return lines


def superseded_lines(b6):
    """The cells of recipes the library has since changed, with why: on
    record, not in any table above."""
    rows = b6.get("superseded") or []
    if not rows:
        return []
    lines = [
        "### Superseded cells",
        "",
        "Run with an earlier version of a method's recipe and run again "
        "since; kept for the record, used for nothing above.",
        "",
        "| arch | method | variant | budget | extra epochs | seed | val | "
        "right after the cut (val) | why superseded |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        lines.append(
            f"| {c['arch']} | `{c['method']}` | {c.get('variant') or ''} | "
            f"{c['budget']} | {c['extra_epochs']} | {c['seed']} | "
            f"{_percent(c['val'])} | {_percent(c['after_cut_val'])} | "
            f"{c.get('superseded_because', '')} |"
        )
    return lines + [""]


def body(b6):
    """The generated text between the markers."""
    lines = [
        "Every method starts from the same reference of its seed and gets "
        "the same extra epochs after it (the extra-epoch budget of each "
        "table). Choices (recipes, regularization strengths) are made on "
        "validation accuracy of tuning seeds only (`role: tune`); test "
        "accuracy is reported for the other seeds, paired per seed with "
        "guided: the mean difference and its 95 % t-interval "
        "(`benchmarks/stats.py`), a **tie** where the interval contains "
        "zero. Accuracies in %, ± the sample std over seeds.",
        "",
        f"Raw numbers: `{JSON_NAME}` next to this page; this section is "
        "generated by `python -m benchmarks.b6_report --docs "
        "docs/benchmarks.md`.",
        "",
    ]
    methods = method_lines(b6)
    if methods:
        lines += ["### Methods", ""] + methods
    lines += ["### References", ""] + reference_lines(b6)
    for arch in _archs(b6):
        both = tuning_seeds(b6, arch) & {
            c["seed"]
            for c in b6["cells"]
            if c["arch"] == arch and c.get("role") == "test"
        }
        if both:
            lines += [
                f"**{arch}: {_seed_list(both)} also used for tuning**: "
                "their test cells are shown below but are not free of "
                "every choice.",
                "",
            ]
    lines += ["### Goals", ""] + (
        goal_lines(b6) or ["Goals: " + NOT_MEASURED + ".", ""]
    )
    lines += ["### Test seeds", ""] + grid_lines(b6)
    tuning = tuning_lines(b6)
    lines += ["### Tuning", ""] + (
        tuning or ["Tuning cells: " + NOT_RUN + ".", ""]
    )
    lines += superseded_lines(b6)
    return "\n".join(lines).rstrip("\n") + "\n"


def section(b6):
    """The whole `## B6` section, heading and markers included."""
    return f"{HEADING}\n\n{BEGIN}\n{body(b6)}{END}\n"


def replace_region(text, b6):
    """`text` with the region between the markers regenerated, or the
    section appended when the markers are missing."""
    return report.replace_region(text, BEGIN, END, body(b6), section(b6))


def write_docs(b6, page):
    report.write_region(page, BEGIN, END, body(b6), section(b6))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b6_report")
    parser.add_argument(
        "--json", default=os.path.join("docs", JSON_NAME), help="B6 results"
    )
    parser.add_argument(
        "--docs", default=None, help="page whose B6 region to regenerate"
    )
    parser.add_argument(
        "--md", default=None, help="also write the section alone here"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not os.path.exists(args.json):
        report.write_atomic(args.json, json.dumps(empty(), indent=1) + "\n")
    b6 = load(args.json)
    if args.docs:
        write_docs(b6, args.docs)
    if args.md:
        report.write_atomic(args.md, section(b6))
    if not (args.docs or args.md):
        print(section(b6))


if __name__ == "__main__":
    main()
