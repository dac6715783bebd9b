"""The B6 section is generated from its JSON alone, partial or empty."""

import json

from benchmarks import b6_report


def _cell(method, seed, test, role="test", variant="", extra=2, val=0.5):
    return {
        "arch": "resnet20",
        "budget": "flops/2x",
        "method": method,
        "variant": variant,
        "seed": seed,
        "role": role,
        "extra_epochs": extra,
        "val": val,
        "test": test,
        "after_cut_val": 0.5,
        "after_cut_test": 0.4,
        "flops_kept": 0.5,
        "params": 1000,
    }


def _synthetic():
    references = [
        {"arch": "resnet20", "seed": s, "val": 0.9, "test": t, "epochs": 30}
        for s, t in ((0, 0.905), (1, 0.910), (2, 0.912), (3, 0.914))
    ]
    cells = [
        _cell("guided", 0, None, "tune", "a", val=0.88),
        _cell("guided", 0, None, "tune", "b", val=0.86),
        _cell("tp_group_sl", 0, None, "tune", "reg1e-3", val=0.85),
    ]
    # guided minus l1_oneshot per test seed: +1, +2, +3 points.
    for seed, mine, theirs in (
        (1, 0.90, 0.89),
        (2, 0.91, 0.89),
        (3, 0.92, 0.89),
    ):
        cells.append(_cell("guided", seed, mine, variant="a"))
        cells.append(_cell("l1_oneshot", seed, theirs))
    cells.append(_cell("tp_group_sl", 1, 0.88, variant="reg1e-3"))
    return {"references": references, "cells": cells}


def test_b6_section_from_a_synthetic_json():
    text = b6_report.section(_synthetic())
    assert text.startswith("## B6: CIFAR-10 from strong references\n\n")
    assert "| resnet20 | 0 | tuning | 30 | 90.00 | 90.50 |" in text
    assert "| resnet20 | 1 | test | 30 | 90.00 | 91.00 |" in text
    # Test seeds 1-3: 91.0, 91.2, 91.4: mean 91.2, sample std 0.2.
    assert "resnet20: test 91.20 ± 0.20 % over the test seeds 1, 2, 3" in text
    assert "#### resnet20, flops/2x, 2 extra epochs" in text
    assert (
        "| `guided` | a | 91.00 ± 1.00 | 3 | 40.00 ± 0.00 | 0.500 | 1,000 "
        "| (the baseline of the comparison) |"
    ) in text
    # Differences 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.3027, half-width
    # 4.3027 / sqrt(3) = 2.484.
    assert (
        "| `l1_oneshot` |  | 89.00 ± 0.00 | 3 | 40.00 ± 0.00 | 0.500 | "
        "1,000 | +2.00 [-0.48, +4.48], tie (seeds 1, 2, 3) |"
    ) in text
    assert (
        "| `tp_group_sl` | reg1e-3 | 88.00 | 1 | 40.00 | 0.500 | 1,000 | "
        "+2.00, one seed, no interval (seed 1) |"
    ) in text
    # Budgets without cells read "not run yet".
    assert "#### resnet20, flops/4x, 2 extra epochs" in text
    four = text.split("#### resnet20, flops/4x, 2 extra epochs")[1]
    assert "| `l1_oneshot` | | not run yet | 0 | | | | |" in four
    assert "Reference over guided's seeds 1, 2, 3: 91.20 ± 0.20 %." in text
    tuning = text.split("### Tuning")[1]
    assert "| `guided` | a | 88.00 (1); 50.00 (tested) |" in tuning
    assert "| `guided` | b | 86.00 (1); 50.00 |" in tuning
    assert "| `tp_group_sl` | reg1e-3 | 85.00 (1); 50.00 (tested) |" in tuning


def test_b6_section_from_empty_and_references_only():
    text = b6_report.section(b6_report.empty())
    assert "References: not run yet." in text
    assert "Grid cells: not run yet." in text
    assert "Tuning cells: not run yet." in text
    only = {"references": _synthetic()["references"], "cells": []}
    text = b6_report.section(only)
    # No tuning cell yet: every seed counts as a test seed.
    assert "test 91.03 ± 0.39 % over the test seeds 0, 1, 2, 3" in text
    assert "Grid cells: not run yet." in text
    assert "the goal is 91.00 % test, mean over the test seeds: met" in text


def test_b6_reference_goal_is_judged_on_test_seeds_only():
    # The JSON's settings name the tuning seed before any tuning cell.
    first = {
        "settings": {"tune_seeds": [0]},
        "references": [
            {
                "arch": "resnet20",
                "seed": 0,
                "val": 0.88,
                "test": 0.8702,
                "epochs": 40,
            }
        ],
        "cells": [],
    }
    text = b6_report.section(first)
    assert "| resnet20 | 0 | tuning | 40 | 88.00 | 87.02 |" in text
    assert (
        "resnet20: the goal is 91.00 % test, mean over the test seeds: no "
        "test seed yet, and the recipe ends below it on the tuning seed "
        "(87.02 % on seed 0, after 40 epochs)."
    ) in text
    first["references"].append(
        {"arch": "resnet20", "seed": 1, "val": 0.9, "test": 0.905, "epochs": 40}
    )
    text = b6_report.section(first)
    assert "mean over the test seeds: **missed** (90.50 %)." in text


def test_b6_docs_region_is_replaced_or_appended(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## B5: x\nkept\n")
    path = tmp_path / "b6.json"
    b6_report.main(["--json", str(path), "--docs", str(page)])
    assert json.loads(path.read_text()) == {"references": [], "cells": []}
    first = page.read_text()
    assert first.startswith("# Benchmarks\n\n## B5: x\nkept\n\n## B6: ")
    assert first.count(b6_report.BEGIN) == 1
    path.write_text(json.dumps(_synthetic()))
    page.write_text(first + "\n## After\nalso kept\n")
    b6_report.main(["--json", str(path), "--docs", str(page)])
    second = page.read_text()
    assert second.count(b6_report.BEGIN) == 1
    assert second.count(b6_report.END) == 1
    assert "not run yet" in second and "+2.00 [-0.48, +4.48], tie" in second
    assert second.endswith(b6_report.END + "\n\n## After\nalso kept\n")
    assert second.startswith("# Benchmarks\n\n## B5: x\nkept\n\n## B6: ")


def test_b6_flags_a_seed_used_for_tuning_and_test():
    b6 = _synthetic()
    b6["cells"].append(_cell("guided", 0, 0.93, variant="a"))
    text = b6_report.section(b6)
    assert "**resnet20: seed 0 also used for tuning**" in text


def test_rewriting_the_page_for_b1_b3_keeps_the_b6_section(tmp_path):
    from benchmarks import __main__ as runner

    page = tmp_path / "benchmarks.md"
    b6 = b6_report.section(b6_report.empty())
    page.write_text("# Benchmarks\n\n## B1\nold\n## B5: BERT\nkept\n\n" + b6)
    text = runner._keep_own_sections("# Benchmarks\n\n## B1\nnew\n", str(page))
    assert text.endswith(b6)
    assert "## B1\nnew\n" in text and "## B5: BERT\nkept\n" in text


def test_superseded_cells_run_again_and_stay_on_record(tmp_path):
    from benchmarks import b6_results

    path = str(tmp_path / "b6.json")
    with open(path, "w") as f:
        json.dump(_synthetic(), f)
    planned = [("flops/2x", "guided", "a", 0, 2, "tune")]
    assert b6_results.pending_cells(path, "resnet20", planned) == []
    moved = b6_results.supersede(
        path,
        lambda row: not (row["method"] == "guided" and row["seed"] == 0),
        "an older controller",
    )
    assert moved == 2
    # Out of the cells: planned again, and not in the tuning table.
    assert b6_results.pending_cells(path, "resnet20", planned) == planned
    b6 = b6_report.load(path)
    assert len(b6["cells"]) == len(_synthetic()["cells"]) - 2
    text = b6_report.section(b6)
    tuning = text.split("### Tuning")[1].split("### Superseded cells")[0]
    assert "`guided`" not in tuning
    assert (
        "| resnet20 | `guided` | a | flops/2x | 2 | 0 | 88.00 | 50.00 | "
        "an older controller |"
    ) in text


def _goal_cells(budget, extra, guided, peer, after=0.4):
    """Test cells on seeds 1-3: guided and one `l1_oneshot` peer."""
    cells = []
    for seed, (mine, theirs) in enumerate(zip(guided, peer), start=1):
        for method, test in (("guided", mine), ("l1_oneshot", theirs)):
            cell = _cell(method, seed, test, extra=extra)
            cell.update(budget=budget, after_cut_test=after)
            cells.append(cell)
    return cells


def test_b6_goals_are_judged_from_the_test_cells():
    b6 = _synthetic()
    # References on test seeds 1-3: 91.0, 91.2, 91.4.
    b6["cells"] = [c for c in b6["cells"] if c["role"] == "tune"]
    # 2x, E=8: guided 90.9, 91.0, 91.1 (minus the reference: -0.1,
    # -0.2, -0.3), right after the cut 90.6 (-0.4, -0.6, -0.8).
    b6["cells"] += _goal_cells(
        "flops/2x", 8, (0.909, 0.910, 0.911), (0.90, 0.90, 0.90), after=0.906
    )
    # 4x, E=2: guided leads by 2, 3, 4 points: mean 3, interval
    # [+0.52, +5.48] (s = 1, t(0.975, 2) / sqrt(3) = 2.484).
    b6["cells"] += _goal_cells(
        "flops/4x", 2, (0.80, 0.81, 0.82), (0.78, 0.78, 0.78)
    )
    # 3x, E=2: the peer leads by 2, 3, 4 points.
    b6["cells"] += _goal_cells(
        "flops/3x", 2, (0.78, 0.78, 0.78), (0.80, 0.81, 0.82)
    )
    goals = b6_report.section(b6).split("### Goals")[1].split("### Test")[0]
    assert "- references at least 91.00 % test: met (91.20 %)." in goals
    assert (
        "within 0.5 points of its reference: E=8: guided minus reference "
        "-0.20 [-0.45, +0.05] points (seeds 1, 2, 3): met"
    ) in goals
    assert (
        "both extra-epoch budgets: **missed**: `l1_oneshot` at flops/3x "
        "E=2 (-3.00 [-5.48, -0.52])"
    ) in goals
    assert (
        "flops/3x: guided minus `l1_oneshot` -3.00 [-5.48, -0.52] points "
        "(seeds 1, 2, 3): **missed**; flops/4x: guided minus `l1_oneshot` "
        "+3.00 [+0.52, +5.48] points (seeds 1, 2, 3): met"
    ) in goals
    assert (
        "right after the cut at 2x, guided within 1.0 point of its "
        "reference: E=8: guided minus reference -0.60 [-1.10, -0.10] "
        "points (seeds 1, 2, 3): met"
    ) in goals
    # A lead under a point, or an interval that holds zero, misses.
    b6["cells"] = [c for c in b6["cells"] if c["budget"] != "flops/4x"]
    b6["cells"] += _goal_cells(
        "flops/4x", 2, (0.80, 0.79, 0.80), (0.79, 0.79, 0.79)
    )
    goals = b6_report.section(b6).split("### Goals")[1].split("### Test")[0]
    assert "flops/4x: guided minus `l1_oneshot` +0.67" in goals
    assert goals.count("**missed**") == 3


def test_b6_goals_before_any_test_cell():
    text = b6_report.section(b6_report.empty())
    assert "Goals: not measured yet (no test cells)." in text
    b6 = _synthetic()
    b6["cells"] = [c for c in b6["cells"] if c["role"] == "tune"]
    goals = b6_report.section(b6).split("### Goals")[1].split("### Test")[0]
    assert goals.count("not measured yet (no test cells)") == 5


def test_b6_methods_and_the_left_out_ones_are_described():
    from benchmarks import b6_protocol

    b6 = _synthetic()
    b6["descriptions"] = b6_protocol.DESCRIPTIONS
    b6["variants"] = b6_protocol.VARIANTS
    b6["left_out"] = b6_protocol.LEFT_OUT
    methods = b6_report.section(b6).split("### Methods")[1]
    methods = methods.split("### References")[0]
    tried = len(b6_protocol.VARIANTS["tp_group_sl"])
    assert f"- `tp_group_sl` ({tried} variants to tune): " in methods
    assert "- `l1_oneshot`: prune_model(reference" in methods
    assert "- `slimming`: **left out**: network slimming" in methods
    assert "- `group_lasso`: **left out**: " in methods
    # Without descriptions in the JSON, no Methods heading.
    assert "### Methods" not in b6_report.section(_synthetic())


def test_b6_tuning_table_marks_the_chosen_variants():
    b6 = _synthetic()
    b6["chosen"] = {"guided|flops/2x": "b", "tp_group_sl": "reg1e-3"}
    tuning = b6_report.section(b6).split("### Tuning")[1]
    assert "| `guided` | b | 86.00 (1); 50.00 **chosen** |" in tuning
    assert "| `guided` | a | 88.00 (1); 50.00 (tested) |" in tuning
    assert (
        "| `tp_group_sl` | reg1e-3 | 85.00 (1); 50.00 **chosen** (tested) |"
    ) in tuning
    # The most specific key wins.
    b6["chosen"]["guided|flops/2x|2"] = "a"
    tuning = b6_report.section(b6).split("### Tuning")[1]
    assert "| `guided` | a | 88.00 (1); 50.00 **chosen** (tested) |" in tuning


def test_b6_cells_are_paired_with_the_training_of_the_reference_they_name():
    b6 = _synthetic()
    # Seed 0's reference was trained again (its weights lost with a
    # machine): a second row, and a tuning cell from it.
    again = {**b6["references"][0], "val": 0.91, "weights_sha256": "ab" * 8}
    b6["references"].append(again)
    b6["cells"].append(
        {
            **_cell("guided", 0, None, "tune", "b", val=0.70),
            "reference_sha256": "ab" * 8,
        }
    )
    # Seed 1's reference twice: its cells name the first training.
    b6["references"].append(
        {**b6["references"][1], "test": 0.50, "weights_sha256": "cd" * 8}
    )
    text = b6_report.section(b6)
    assert (
        "**resnet20, seed 0: its reference was trained 2 times** (weights "
        "not recorded: val 90.00 %, test 90.50 %, 3 cell(s); weights "
        "`abababab`: val 91.00 %, test 90.50 %, 1 cell(s))"
    ) in text
    assert "| resnet20 | 0 | tuning | 30 | 91.00 | 90.50 | `abababab` |" in text
    tuning = text.split("### Tuning")[1]
    # The entry mixing both trainings is marked; the others are not.
    assert "| `guided` | b | 78.00 (2); 50.00 †" in tuning
    assert "| `guided` | a | 88.00 (1); 50.00 (tested) |" in tuning
    # guided's test cells pair with the reference each names (seed 1's
    # first training, 91.0 % test), not with the last row of the seed.
    assert "Reference over guided's seeds 1, 2, 3: 91.20 ± 0.20 %." in text
    b6["cells"].append({**_cell("guided", 4, 0.9), "reference_sha256": "ef"})
    assert "**1 cell(s) name a reference that is not in the JSON**" in (
        b6_report.section(b6)
    )


def test_b6_a_retrained_reference_is_a_row_of_its_own(tmp_path):
    from benchmarks import b6_results

    path = str(tmp_path / "b6.json")
    first = {"arch": "resnet20", "seed": 0, "epochs": 40, "val": 0.88}
    b6_results.record(path, reference=first)
    again = {**first, "val": 0.87, "weights_sha256": "ab" * 8}
    b6_results.record(path, reference=again)
    b6_results.record(path, reference={**again, "test": 0.86})
    rows = b6_results.load_results(path)["references"]
    assert [(r["val"], r.get("test")) for r in rows] == [
        (0.88, None),
        (0.87, 0.86),
    ]


def test_b6_a_peer_goal_met_on_thin_evidence_says_so():
    b6 = _synthetic()
    goals = b6_report.section(b6).split("### Goals")[1].split("### Test")[0]
    # guided leads l1_oneshot on three seeds; tp_group_sl has one seed.
    assert "met so far on flops/2x E=2 (1 of 6 measured)" in goals
    assert (
        "**still thin**: `tp_group_sl` reg1e-3 at flops/2x E=2 on 1 common seed"
    ) in goals
    assert "`l1_oneshot` at flops/2x E=2 on" not in goals
    # A peer tuned but not run on the test seeds is named too.
    b6["cells"] = [
        c
        for c in b6["cells"]
        if c["role"] == "tune" or (c["method"] != "tp_group_sl")
    ]
    goals = b6_report.section(b6).split("### Goals")[1].split("### Test")[0]
    assert "**still thin**: `tp_group_sl` not run at flops/2x E=2" in goals
    # With every peer on three seeds, the goal reads plainly.
    b6["cells"] = [c for c in b6["cells"] if c["method"] != "tp_group_sl"]
    goals = b6_report.section(b6).split("### Goals")[1].split("### Test")[0]
    assert "met on flops/2x E=2 (1 of 6 measured)" in goals
    assert "still thin" not in goals


def test_b6_guided_baseline_is_the_chosen_variant_not_the_most_run():
    b6 = _synthetic()
    # An E=8 choice replaces `a` with `c` at 2x: `a` keeps its three test
    # seeds, `c` has one so far. The comparison's baseline is `c`, and the
    # row of `a` says it is an earlier choice.
    b6["chosen"] = {"guided|flops/2x|2": "c", "tp_group_sl": "reg1e-3"}
    b6["cells"].append(_cell("guided", 1, 0.80, variant="c"))
    text = b6_report.section(b6)
    grid = text.split("#### resnet20, flops/2x, 2 extra epochs")[1]
    grid = grid.split("####")[0]
    assert (
        "| `guided` | c | 80.00 | 1 | 40.00 | 0.500 | 1,000 "
        "| (the baseline of the comparison) |"
    ) in grid
    # c minus l1_oneshot on seed 1: 80 - 89 = -9.
    assert "-9.00, one seed, no interval (seed 1)" in grid
    assert "| `guided` | a (earlier choice; now c) | 91.00 ± 1.00 | 3 |" in grid
    assert "| `tp_group_sl` | reg1e-3 | 88.00 | 1 |" in grid
    # Without the choice, the row with the most seeds (a) stays the
    # baseline: a minus c on seed 1 is 90 - 80.
    del b6["chosen"]
    grid = b6_report.section(b6).split("flops/2x, 2 extra epochs")[1]
    assert "| `guided` | c | 80.00 | 1 | 40.00 | 0.500 | 1,000 | +10.00" in grid
