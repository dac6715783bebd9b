"""Smoke test of the benchmark harness (benchmarks/), at toy size.

Keeps `python -m benchmarks` from rotting: the data split, the idx reader,
the reference rebuild against the masked model, and one B1 method end to
end on scikit-learn digits. Speed is measured by the benchmarks, never
asserted here.
"""

import gzip
import json
import os
import struct

import numpy as np
import pytest

from benchmarks import b1_budget
from benchmarks import common
from benchmarks import data as data_lib
from benchmarks import models as models_lib


def test_split_is_fixed_disjoint_and_sized():
    x = np.arange(10000)[:, None].astype("float32")
    y = np.arange(10000)
    first = data_lib.split(x, y, seed=0)
    second = data_lib.split(x, y, seed=0)
    assert [len(first[k]) for k in ("y_train", "y_val", "y_test")] == [
        8000,
        1000,
        1000,
    ]
    np.testing.assert_array_equal(first["y_val"], second["y_val"])
    together = np.concatenate(
        [first["y_train"], first["y_val"], first["y_test"]]
    )
    assert len(np.unique(together)) == 10000
    np.testing.assert_array_equal(first["x_test"][:, 0], first["y_test"])


def test_read_idx_roundtrip_and_bad_magic(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = os.path.join(tmp_path, "images.gz")
    with gzip.open(path, "wb") as f:
        f.write(
            bytes([0, 0, 0x08, 3])
            + struct.pack(">III", 2, 3, 4)
            + images.tobytes()
        )
    np.testing.assert_array_equal(data_lib.read_idx(path), images)
    bad = os.path.join(tmp_path, "bad")
    with open(bad, "wb") as f:
        f.write(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="is not an idx file"):
        data_lib.read_idx(bad)


def test_missing_mnist_dir_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="must hold t10k-images"):
        data_lib.load_mnist(str(tmp_path))


@pytest.mark.parametrize("name", ["lenet300", "lenet5_bn"])
def test_reference_rebuild_matches_masked_model(name):
    model = models_lib.build(
        name, (8, 8, 1), widths=(6, 5, 7)[: 2 if name == "lenet300" else 3]
    )
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    model(x)
    keep = models_lib.keep_by_fraction(models_lib.unit_norms(model), 0.5)
    masked = models_lib.masked_copy(model, keep)
    small = models_lib.reference_rebuild(masked, keep, name, (8, 8, 1))
    assert models_lib.kept_widths(model, keep) == tuple(
        layer.kernel.shape[-1] for layer, _ in models_lib.prunable_layers(small)
    )
    np.testing.assert_allclose(
        common.logits(small, x), common.logits(masked, x), atol=1e-5
    )


def test_matched_budget_points_end_to_end_on_digits(tmp_path):
    data = data_lib.load(None)
    assert data["name"] == "sklearn-digits"
    path = str(tmp_path / "b1.json")
    messages = []
    result = b1_budget.run(
        data,
        "toy",
        log=messages.append,
        methods=["magnitude", "guided"],
        models=["lenet300"],
        path=path,
        budgets=["units=66"],
    )
    points = result["models"]["lenet300"]["points"]
    assert sorted(points) == ["guided|units=66|0", "magnitude|units=66|0"]
    for point in points.values():
        # Both land exactly on the budget, with no layer emptied.
        assert point["units"] == 66 and min(point["widths"]) >= 1
        assert 0.0 <= point["test"] <= 1.0
    # Resumable: a second run finds every point done and runs nothing.
    again = b1_budget.run(
        data,
        "toy",
        log=messages.append,
        methods=["magnitude", "guided"],
        models=["lenet300"],
        path=path,
        budgets=["units=66"],
    )
    assert again["models"]["lenet300"]["points"] == points
    assert sum("reference" in m for m in messages) == 1
    table = "\n".join(b1_budget.markdown(again))
    assert "| guided |" in table and "66 units" in table


def test_targets_say_reached_or_not_with_numbers():
    def point(test, units=66, flops=1000, params=100):
        return {
            "test": test,
            "units": units,
            "flops": flops,
            "params": params,
            "widths": [units],
        }

    b1 = {
        "models": {
            "lenet300": {
                "reference": {
                    "0": {"test": 0.96, "units": 400, "params": 10, "flops": 10}
                },
                "points": {
                    "guided|units=66|0": point(0.957),
                    "magnitude_iterative|units=66|0": point(0.953),
                },
            }
        }
    }
    lines = b1_budget.targets(b1)
    assert lines[0].endswith(
        "guided 95.70 vs 96.00 (0.30 points below): reached"
    )
    assert lines[1].endswith(": reached")
    assert "units=66: 95.70 vs magnitude_iterative 95.30" in lines[1]
    b1["models"]["lenet300"]["points"]["guided|units=66|0"] = point(0.962)
    assert (
        "guided 96.20 vs 96.00 (0.20 points above): reached"
        in (b1_budget.targets(b1)[0])
    )
    b1["models"]["lenet300"]["points"]["guided|units=66|0"] = point(0.95)
    lines = b1_budget.targets(b1)
    assert lines[0].endswith("not reached, by 0.50 points")
    assert lines[1].endswith("not reached (0 of 1)")


def test_cut_by_scores_meets_a_flops_budget():
    model = models_lib.build("lenet5", (8, 8, 1), widths=(6, 8, 10))
    model(np.zeros((1, 8, 8, 1), "float32"))
    start = b1_budget._measure(model, "flops")
    small = b1_budget._cut_by_scores(
        model, b1_budget._norm_scores(model), {"flops": 0.3}
    )
    flops = b1_budget._measure(small, "flops")
    assert flops <= 0.3 * start
    assert flops >= 0.15 * start


def test_b2_aim_relative_to_another_variant():
    from benchmarks import report

    b2 = {
        "median_seconds": {"plain": 1.0, "regularizer": 1.2, "keras_l1": 1.1},
        "fastest_seconds": {"plain": 1.0, "regularizer": 1.2, "keras_l1": 1.1},
        "ratios": {"regularizer": 1.2, "keras_l1": 1.1},
        "aims": {"regularizer": ["keras_l1", 0.03]},
        "skipped": {},
    }
    lines = report.b2_table(b2)
    assert "| 1.200 | <= keras_l1 + 0.03 = 1.130 (not reached) |" in (lines[3])
    b2["ratios"]["regularizer"] = 1.12
    assert "= 1.130 (reached)" in report.b2_table(b2)[3]


# ------------------------------------------------------------ B4 (CIFAR-10)
# Pure-numpy parts only: the CIFAR files and torch are never needed here.


def _tiny_cifar(n=40):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n).astype(np.uint8),
    }


def test_b4_batches_are_the_same_for_a_seed_and_differ_across_epochs():
    from benchmarks import cifar

    data = _tiny_cifar()
    first = list(cifar.epoch_batches(data, 3, 2, 0, 24, batch_size=10))
    again = list(cifar.epoch_batches(data, 3, 2, 0, 24, batch_size=10))
    assert [len(y) for _, y in first] == [10, 10, 4]
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other = list(cifar.epoch_batches(data, 3, 2, 1, 24, batch_size=10))
    assert not np.array_equal(first[0][0], other[0][0])
    stream = cifar.stream_batches(data, 3, 2, 2, 24, batch_size=10)
    flat = [next(stream) for _ in range(6)]
    np.testing.assert_array_equal(flat[3][0], other[0][0])
    assert flat[0][0].dtype == np.float32 and flat[0][0].shape == (
        10,
        32,
        32,
        3,
    )


def test_b4_augmentation_is_a_shifted_window_possibly_flipped():
    from benchmarks import cifar

    images = _tiny_cifar(16)["x_train"]
    out = cifar.augment(images, np.random.default_rng(5))
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    flips = 0
    for image, crop in zip(padded, out):
        windows = [
            (image[dy : dy + 32, dx : dx + 32], flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
        ]
        matches = [
            flip
            for window, flip in windows
            if np.array_equal(window[:, ::-1] if flip else window, crop)
        ]
        assert matches, "a crop must be a 32x32 window of the padded image"
        flips += all(matches)
    assert 0 < flips < 16


def test_b4_split_and_even_evaluation_subset():
    from benchmarks import cifar

    arrays = {
        "x_train": np.arange(100)[:, None],
        "y_train": np.arange(100),
        "x_test": np.arange(20)[:, None],
        "y_test": np.arange(20),
    }
    data = cifar.split(arrays, validation=10)
    assert len(data["y_train"]) == 90 and len(data["y_val"]) == 10
    assert not set(data["y_train"]) & set(data["y_val"])
    np.testing.assert_array_equal(
        cifar.split(arrays, validation=10)["y_val"], data["y_val"]
    )
    cifar.shrink_evaluation(data, 5)
    np.testing.assert_array_equal(data["y_test"], [0, 4, 9, 14, 19])


def test_b4_missing_cifar_dir_says_what_is_expected(tmp_path):
    from benchmarks import cifar

    with pytest.raises(FileNotFoundError, match="must hold cifar10_train"):
        cifar.load(str(tmp_path), cache=None)


@pytest.mark.skipif(
    __import__("keras").backend.backend() != "tensorflow",
    reason="the XLA choice is TensorFlow's oneDNN question",
)
@pytest.mark.parametrize("onednn, xla", [("0", True), ("1", False)])
def test_cifar_keras_arms_ask_for_xla_exactly_where_onednn_is_off(onednn, xla):
    # In a fresh process: TensorFlow reads TF_ENABLE_ONEDNN_OPTS once.
    import subprocess
    import sys

    code = "from benchmarks import cifar; print(cifar.jit_compile())"
    env = dict(
        os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    assert out.stdout.strip().splitlines()[-1] == str(xla)


def test_b4_resnet_weights_roundtrip_in_the_torch_layout():
    from benchmarks import b4_torch
    from benchmarks import resnet_cifar

    widths = dict(resnet_cifar.default_widths("resnet20"), s1b1_conv1=5)
    model = resnet_cifar.build("resnet20", widths)
    assert b4_torch.block_names("resnet20") == resnet_cifar.block_names(
        "resnet20"
    )
    arrays = resnet_cifar.export_weights(model)
    assert arrays["s1b1_conv1.weight"].shape == (5, 16, 3, 3)  # OIHW
    assert arrays["fc.weight"].shape == (10, 64)
    copy = resnet_cifar.import_weights(
        resnet_cifar.build("resnet20", widths), arrays
    )
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        common.logits(copy, x), common.logits(model, x), atol=1e-6
    )


def test_b4_torch_twin_computes_the_keras_logits():
    pytest.importorskip("torch")  # CI does not install torch
    from benchmarks import b4_torch
    from benchmarks import resnet_cifar

    widths = dict(resnet_cifar.default_widths("resnet20"), s2b1_conv1=7)
    model = resnet_cifar.build("resnet20", widths)
    arrays = resnet_cifar.export_weights(model)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    twin = b4_torch.load_arrays(b4_torch.build("resnet20", widths), arrays)
    twin.eval()
    import torch

    with torch.no_grad():
        got = twin(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, common.logits(model, x), atol=1e-4)


def _b4_point(test, val=0.5):
    return {
        "test": test,
        "val": val,
        "val_after_cut": 0.5,
        "test_after_cut": 0.5,
        "flops_kept": 0.5,
        "flops": 10,
        "params": 5,
        "seconds": 1,
    }


def _b4_three_seeds():
    """guided one point above l1_oneshot on every seed at 2x, two below at
    4x; tp_group_sl run outside its recipe; seed 0 chose the recipe."""
    points = {}
    for seed in range(3):
        for method, budget, test in (
            ("guided", "flops/2x", 0.80 + seed / 100),
            ("l1_oneshot", "flops/2x", 0.79 + seed / 100),
            ("tp_group_sl", "flops/2x", 0.70),
            ("guided", "flops/4x", 0.70 + seed / 100),
            ("l1_oneshot", "flops/4x", 0.72 + seed / 100),
        ):
            points[f"{method}|{budget}|{seed}"] = _b4_point(test)
    return {
        "schedule": {"prune_epochs": 5, "train_images": 20000, "lr": 0.01},
        "settings": {"batch_size": 128, "tp_reg": 0.0005},
        "references": {
            str(seed): {"test": 0.80, "flops": 20, "params": 9, "seconds": 1}
            for seed in range(3)
        },
        "points": points,
        "selection": {"seeds": [0], "why": "the recipe was chosen on it"},
    }


def test_b4_targets_judge_on_paired_intervals_over_clean_seeds():
    from benchmarks import b4_report

    b4 = _b4_three_seeds()
    lines = b4_report.targets(b4)
    # guided minus reference per seed: 0, +1, +2 points: mean +1, s = 1,
    # t(0.975, 2) = 4.3027, half-width 4.3027 / sqrt(3) = 2.484. Seeds
    # 1-2: +1, +2: mean 1.5, s = 0.7071, t(0.975, 1) = 12.706, 6.353.
    assert lines[0] == (
        "- At 2x fewer FLOPs, guided within 0.3 points of its reference "
        "(guided minus reference: +1.00 [-1.48, +3.48], tie over seeds 0-2; "
        "+1.50 [-4.85, +7.85], tie over seeds 1-2 (not used for any "
        "choice)): reached"
    )
    assert lines[1] == (
        "- flops/2x: no counted peer ahead of guided with an interval "
        "excluding zero: reached. Closest peer on the mean, `l1_oneshot`: "
        "+1.00 [+1.00, +1.00], guided ahead over seeds 0-2; +1.00 "
        "[+1.00, +1.00], guided ahead over seeds 1-2 (not used for any "
        "choice)"
    )
    assert "tp_group_sl" not in lines[1]  # run outside its recipe
    assert lines[2].startswith(
        "- flops/4x: no counted peer ahead of guided with an interval "
        "excluding zero: not reached (l1_oneshot). Closest peer on the "
        "mean, `l1_oneshot`: -2.00 [-2.00, -2.00], l1_oneshot ahead"
    )
    assert lines[3].startswith(
        "- flops/4x: guided ahead of the best counted peer (`l1_oneshot`) "
        "by >= 1 point with an interval excluding zero: not reached (-2.00"
    )
    # Without a selection seed, one seed set: every seed.
    del b4["selection"]
    assert "not used for any choice" not in "\n".join(b4_report.targets(b4))


def test_b4_page_shows_sample_std_ties_and_labels_untuned_arms():
    from benchmarks import b4_report

    b4 = _b4_three_seeds()
    b4["points"]["l1_oneshot|flops/2x|2"] = _b4_point(0.84)
    b4["points"]["group_lasso|flops/2x|0"] = _b4_point(0.10)
    table = "\n".join(b4_report.markdown(b4))
    # 80, 81, 82: sample std 1 (the population std would be 0.82).
    assert "| `guided` | 81.00 ± 1.00 (3) |" in table
    assert "| `group_lasso` (collapsed) | 10.00 (1) |" in table
    assert "| `tp_group_sl` (untuned) | 70.00 ± 0.00 (3) |" in table
    assert "**" not in table  # no best-mean bold: intervals decide
    paired = "\n".join(b4_report.paired_lines(b4))
    # guided minus l1_oneshot: +1, +1, -2: mean 0, s = 1.732, half-width
    # 4.3027 * 1.732 / sqrt(3) = 4.30.
    assert (
        "| flops/2x | `l1_oneshot` | +0.00 [-4.30, +4.30], tie | "
        "-0.50 [-19.56, +18.56], tie |"
    ) in paired
    assert "| flops/2x | `group_lasso` (not counted: collapsed) | " in paired
    assert "+70.00, one seed, no interval | not run |" in paired
    why = b4_report.caveats(b4)
    # 157 steps x 5 epochs of cosine from 0.01 sum to 3.9; 391 steps x
    # (60 x 0.01 + 20 x 0.001 + 20 x 0.0001) = 243.2: 62x.
    assert "(summed lr 3.9)" in why["tp_group_sl"]
    assert (
        "(summed lr 243): about 62x less regularization" in (why["tp_group_sl"])
    )
    assert why["group_lasso"].startswith("collapsed")
    note = "\n".join(b4_report.reading_note(b4))
    assert "**Selection seed.** Seed 0: the recipe was chosen on it." in note


def test_b4_page_parts_keep_working():
    from benchmarks import b4_report

    b4 = _b4_three_seeds()
    page = b4_report.replace_section(
        "# B\n\n## B1\nx\n## B4 old\ny\n", "## B4 new\n"
    )
    assert page == "# B\n\n## B1\nx\n## B4 new\n"
    b4["superseded"] = {
        "group_lasso|flops/2x|0": {"test": 0.1, "why": "before a fix"}
    }
    assert "- `group_lasso|flops/2x|0`: test 10.00 % (before a fix)" in (
        "\n".join(b4_report.markdown(b4))
    )
    b4["points"]["slimming|flops/2x|0"] = {"error": "ValueError: x"}
    assert "- `slimming|flops/2x|0`: failed: ValueError: x" in "\n".join(
        b4_report.markdown(b4)
    )
    text = b4_report.section(b4, None)
    assert text.startswith("## B4: CIFAR-10 short schedule")


def test_b4_failed_cells_run_again_and_done_ones_do_not():
    from benchmarks import b4_cifar

    assert b4_cifar._done({"test": 0.7}) and b4_cifar._done({"skipped": "x"})
    assert not b4_cifar._done({"error": "x"}) and not b4_cifar._done(None)
    order = b4_cifar.cells([0], [1 / 3, 0.25, 0.5], ["slimming", "guided"])
    assert order == [
        (0, 0.5, "guided"),
        (0, 0.5, "slimming"),
        (0, 0.25, "guided"),
        (0, 0.25, "slimming"),
        (0, 1 / 3, "guided"),
        (0, 1 / 3, "slimming"),
    ]


def test_rewriting_the_page_for_b1_b3_keeps_the_b4_and_b5_sections(tmp_path):
    from benchmarks import __main__ as runner

    page = tmp_path / "benchmarks.md"
    page.write_text(
        "# Benchmarks\n\n## B1\nold\n## B4: CIFAR\nkept\n"
        "## B5: BERT\nalso kept\n"
    )
    text = runner._keep_own_sections("# Benchmarks\n\n## B1\nnew\n", str(page))
    assert text == (
        "# Benchmarks\n\n## B1\nnew\n\n## B4: CIFAR\nkept\n"
        "\n## B5: BERT\nalso kept\n"
    )
    assert runner._keep_own_sections("x\n", str(tmp_path / "none.md")) == (
        "x\n"
    )


def test_b4_recipe_variants_are_chosen_on_validation_apart_from_the_grid():
    from benchmarks import b4_report

    def point(val, test):
        return {
            "val": val,
            "test": test,
            "val_after_cut": 0.5,
            "test_after_cut": 0.5,
            "flops_kept": 0.5,
            "flops": 10,
            "params": 5,
            "seconds": 1,
        }

    b4 = {
        "points": {
            "guided|flops/4x|0": point(0.70, 0.69),
            "guided:flat|flops/4x|0": point(0.72, 0.99),
            "l1_oneshot|flops/4x|0": point(0.71, 0.70),
        },
        "variants": {"guided:flat": {"cost_power": 0.0}},
    }
    assert set(b4_report.summary(b4)) == {"guided", "l1_oneshot"}
    lines = b4_report.variant_lines(b4)
    assert "| `guided` | the default | 70.00 (1) |" in lines
    assert "| `guided:flat` | cost_power=0.0 | 72.00 (1) |" in lines
    assert "99" not in "\n".join(lines)  # test accuracy is not shown


def test_b5_section_reads_its_numbers_from_the_json(tmp_path):
    from benchmarks import b5_bert_latency as b5

    result = {
        "config": dict(b5.CONFIGS["full"]),
        "groups_pruned": 24,
        "params": [100, 60],
        "flops": [1000, 500],
        "prune_max_abs_diff": 2e-6,
        "output_scale": 4.0,
        "modes": {
            "float32": {
                "files": {
                    "base": {"bytes": 4_000_000, "max_abs_diff": 1e-5},
                    "pruned": {"bytes": 2_500_000, "max_abs_diff": 2e-5},
                },
                "latency": {
                    "base_ms": 200.0,
                    "pruned_ms": 104.0,
                    "ratio": 0.52,
                    "spread": 0.03,
                },
            }
        },
    }
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## B4: CIFAR\nkept\n")
    b5.write_docs(result, str(page), "python -m benchmarks.b5_bert_latency")
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\n## B4: CIFAR\nkept\n\n## B5")
    assert (
        "| float32 | 4.0 -> 2.5 | 1e-05, 2e-05 | 200.0 -> 104.0 | "
        "0.520 (3.0%) | 0.500 |"
    ) in text
    assert "Params 100 -> 60 (0.600)" in text


def test_b6_test_cells_run_only_the_chosen_variant(monkeypatch):
    from benchmarks import b6_protocol

    monkeypatch.setattr(b6_protocol, "CHOSEN", {})  # nothing chosen yet

    def plan(methods, seeds, role, extra_epochs=(2,)):
        return b6_protocol.plan_cells(
            methods, ["flops/2x"], extra_epochs, seeds, role, log=str
        )

    with pytest.raises(ValueError) as error:
        plan(["guided:kd"], [1], "test")
    assert str(error.value) == (
        "a test cell runs only the variant chosen on the tuning seed: "
        "guided at flops/2x, E=2 runs 'default' (default: no variant "
        "chosen on the tuning seed yet). Received: 'guided:kd'. Pass "
        "--methods guided, or run the variant with --role tune on the "
        "tuning seed."
    )
    with pytest.raises(ValueError, match=r"seed 0 chooses the variants"):
        plan(["guided"], [0], "test")
    with pytest.raises(ValueError, match=r"Received: seed 1\. Pass --role"):
        plan(["guided"], [1], "tune")
    with pytest.raises(ValueError, match=r"Received: 'guided:nope'"):
        plan(["guided:nope"], [0], "tune")
    assert plan(["guided"], [1], "test") == [
        (
            "flops/2x",
            "guided",
            "default",
            1,
            2,
            "default: no variant chosen on the tuning seed yet",
        )
    ]
    monkeypatch.setitem(b6_protocol.CHOSEN, "guided|flops/2x|2", "kd")
    cells = plan(["guided:kd", "l1_oneshot"], [1], "test")
    assert [(c[1], c[2]) for c in cells] == [
        ("guided", "kd"),
        ("l1_oneshot", "default"),
    ]
    assert cells[0][5] == "chosen on the tuning seed (guided|flops/2x|2)"
    # At E=2 one penalty epoch is the default, so `p1` and `pmost` repeat
    # it and are not run; at E=8 they are 1 and 7 against the default 4.
    cells = plan(["guided", "guided:p1", "guided:pmost"], [0], "tune", (2, 8))
    assert [(c[2], c[4]) for c in cells] == [
        ("default", 2),
        ("default", 8),
        ("p1", 8),
        ("pmost", 8),
    ]
    assert [
        b6_protocol.effective("guided", v, 8)["regularization_epochs"]
        for v in ("default", "p1", "pmost")
    ] == [4, 1, 7]
    assert b6_protocol.expand_methods(["tp_group_sl:all", "li_l1"]) == [
        "tp_group_sl:default",
        "tp_group_sl:reg2e-3",
        "tp_group_sl:reg5e-3",
        "tp_group_sl:reg1e-2",
        "tp_group_sl:reg2e-2",
        "tp_group_sl:reg5e-2",
        "tp_group_sl:reg2e-3_s1",
        "tp_group_sl:reg2e-2_s1",
        "li_l1",
    ]
    # A variant that repeats an earlier one that is not the default at
    # this E (one epoch of sparsity learning is E=2's rule) is not tuned
    # again; at E=8 it differs (1 sparsity epoch against 4).
    cells = plan(
        ["tp_group_sl:reg2e-3", "tp_group_sl:reg2e-3_s1"], [0], "tune", (2, 8)
    )
    assert [(c[2], c[4]) for c in cells] == [
        ("reg2e-3", 2),
        ("reg2e-3", 8),
        ("reg2e-3_s1", 8),
    ]
    # A variant's fine-tuning learning rate reaches the cell's settings.
    assert b6_protocol.effective("guided", "relative_ft_low", 8) == {
        "importance": "relative",
        "finetune_lr": 0.003,
        "regularization_epochs": 4,
    }
    assert b6_protocol.effective("tp_group_sl", "reg2e-2", 2) == {
        "reg": 2e-2,
        "regularization_epochs": 1,
    }


def test_b6_budgets_parse_to_keys():
    from benchmarks import b6_protocol

    assert [b6_protocol.parse_budget(t) for t in ("2x", "flops/4x", "1/3")] == [
        "flops/2x",
        "flops/4x",
        "flops/3x",
    ]
    assert b6_protocol.budget_fraction("flops/4x") == 0.25
    assert b6_protocol.parse_budget("2.12x") == "flops/2.12x"
    with pytest.raises(ValueError) as error:
        b6_protocol.parse_budget("half")
    assert str(error.value) == (
        "a budget is how many times fewer FLOPs (2x, 3x, 4x) or the "
        "fraction kept (0.5, 1/3). Received: 'half'"
    )


def test_b6_rows_are_replaced_by_key_and_choices_read_validation(tmp_path):
    from benchmarks import b6_results

    path = str(tmp_path / "b6.json")

    def cell(variant, val, seed=0, role="tune", test=0.5):
        return {
            "arch": "resnet20",
            "budget": "flops/2x",
            "method": "guided",
            "variant": variant,
            "seed": seed,
            "role": role,
            "extra_epochs": 2,
            "val": val,
            "test": test,
        }

    b6_results.record(path, cell=cell("default", 0.80))
    b6_results.record(path, cell=cell("kd", 0.85))
    # The test set never chooses: a better test accuracy is ignored, and a
    # test-role cell does not vote.
    b6_results.record(path, cell=cell("default", 0.81, test=0.99))
    b6_results.record(path, cell=cell("default", 0.99, seed=1, role="test"))
    reference = {"arch": "resnet20", "seed": 0, "epochs": 40, "val": 0.9}
    b6_results.record(path, reference=reference)
    b6_results.record(path, reference={**reference, "val": 0.91})
    results = b6_results.load_results(path)
    assert [r["val"] for r in results["references"]] == [0.91]
    # A row written again keeps its place in the file.
    assert [(c["variant"], c["seed"], c["val"]) for c in results["cells"]] == [
        ("default", 0, 0.81),
        ("kd", 0, 0.85),
        ("default", 1, 0.99),
    ]
    assert b6_results.show_choices(path) == (
        "CHOSEN = {\n"
        "    'guided|flops/2x|2': 'kd',  # val: kd 85.00, default 81.00\n"
        "}"
    )


@pytest.mark.slow
def test_b6_quick_cells_end_to_end_and_resumable(tmp_path, capsys, monkeypatch):
    from benchmarks import b6_cifar
    from benchmarks import b6_protocol
    from benchmarks import b6_reference
    from benchmarks import b6_results
    from benchmarks import cifar

    rng = np.random.default_rng(0)

    def images(n):
        return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)

    data = {
        "x_train": images(256),
        "y_train": rng.integers(0, 10, 256).astype(np.uint8),
        "x_val": images(64),
        "y_val": rng.integers(0, 10, 64).astype(np.uint8),
        "x_test": images(64),
        "y_test": rng.integers(0, 10, 64).astype(np.uint8),
    }
    path = str(tmp_path / "b6.json")
    argv = ["--quick", "--json", path, "--methods", "guided,l1_oneshot"]
    results = b6_cifar.main(argv, data=data)
    assert [r["seed"] for r in results["references"]] == [0]
    # The protocol's weight decay (a module without Keras) is the
    # reference's.
    assert b6_protocol.WEIGHT_DECAY == b6_reference.WEIGHT_DECAY
    rows = {row["method"]: row for row in results["cells"]}
    assert sorted(rows) == ["guided", "l1_oneshot"]
    for row in rows.values():
        assert set(b6_results.KEY) <= set(row)
        assert {"val", "test", "after_cut_val", "after_cut_test"} <= set(row)
        assert (row["budget"], row["role"], row["extra_epochs"]) == (
            "flops/2x",
            "tune",
            2,
        )
        assert 0.3 < row["flops_kept"] <= 0.5 * 1.01
        assert row["params"] < results["references"][0]["params"]
        # The fine-tuning keeps its last epoch: no choice on validation.
        assert row["finetune_keep"] == "last"
        assert row["finetune_epoch_kept"] == row["finetune_epochs"]
        # Its time is kept with the machine it was measured on (and
        # whether its Keras training ran with XLA).
        xla = "" if cifar.jit_compile() else ", no XLA"
        assert row["machine"].endswith(", 2 threads" + xla)
    assert rows["guided"]["regularization_epochs"] == 1
    assert rows["l1_oneshot"]["finetune_epochs"] == 2
    capsys.readouterr()
    # Resumable: a second run finds both cells and trains nothing.
    again = b6_cifar.main(argv, data=data)
    assert again["cells"] == results["cells"]
    assert "0 of 2 cells to run" in capsys.readouterr().out
    # A cell expected to end after --until is not started: guided at E=1
    # is expected to take half its E=2 cell's time.
    now = __import__("datetime").datetime.now().isoformat(timespec="seconds")
    late = argv + ["--extra-epochs", "1", "--until", now]
    with pytest.raises(SystemExit) as stop:
        b6_cifar.main(late, data=data)
    assert stop.value.code == b6_protocol.UNTIL_EXIT
    assert "would end after --until" in capsys.readouterr().out
    assert b6_results.load_results(path)["cells"] == results["cells"]
    assert {
        (row["regularization_lr"], row["finetune_lr"])
        for row in results["cells"]
    } == {(0.01, 0.01)}
    # A variant with its own learning rates trains each phase with it.
    from benchmarks import b4_cifar

    seen = []

    def spy(name):
        real = getattr(b4_cifar, name)

        def phase(*args):
            seen.append((name, args[3]["lr"]))  # both take cfg fourth
            return real(*args)

        monkeypatch.setattr(b4_cifar, name, phase)

    spy("distill")
    spy("guided_phase")
    low = ["--quick", "--json", path, "--methods", "guided:lr_low"]
    row = b6_cifar.main(low, data=data)["cells"][-1]
    assert row["variant"] == "lr_low"
    assert (row["regularization_lr"], row["finetune_lr"]) == (0.003, 0.003)
    assert seen == [("guided_phase", 0.003), ("distill", 0.003)]


def test_b8_page_table_is_the_json_it_was_made_from():
    import json
    import os

    from benchmarks import b8_decoder_device as b8

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(
        os.path.join(root, "docs", "benchmarks_b8_decoder_device.json")
    ) as f:
        result = json.load(f)
    with open(os.path.join(root, "docs", "benchmarks.md")) as f:
        page = f.read()
    region = page.split(b8.BEGIN)[1].split(b8.END)[0]
    assert region == "\n" + b8.body(result)
    greedy = result["greedy_float32"]
    assert greedy["same_tokens"] == [greedy["steps"]] * greedy["prompts"]
    assert b8.section(result, result["command"]) in page
    original, *pruned = result["rows"]
    for row in pruned:
        assert row["class"] == "LlamaCausalLM"
        assert row["bytes"] < original["bytes"]
        assert (
            abs(row["params"] / original["params"] - row["asked_share"]) < 0.02
        )


def test_b9_corpus_split_is_by_file_fixed_and_disjoint(tmp_path):
    from benchmarks import b9_decoder_quality as b9

    for name in ["a.py", "b/c.py", "d/e.py", "test/f.py", "site-packages/g.py"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n" * 50)
    for i in range(60):
        (tmp_path / f"m{i}.py").write_text(f"x = {i}\n" * 40)
    root, train, validation = b9.corpus_files(str(tmp_path))
    assert (root, train, validation) == b9.corpus_files(str(tmp_path))
    assert not set(train) & set(validation)
    assert set(train) | set(validation) == {
        p for p in train + validation if "test" not in p and "site" not in p
    }
    assert len(train) + len(validation) == 63
    assert 0 < len(validation) < 15  # about 5 % of the files
    data = b9.read_bytes(root, train)
    w = b9.windows(data, 5, seed=1)
    assert w.shape == (5, b9.LENGTH + 1) and w.dtype == np.int32
    np.testing.assert_array_equal(w, b9.windows(data, 5, seed=1))
    inputs = b9.as_inputs(w)
    assert inputs["token_ids"].shape == (5, b9.LENGTH)


def test_b9_table_marks_cells_not_run():
    from benchmarks import b9_decoder_quality as b9

    result = {
        "tokens": 100,
        "base": {"params": 2_000_000, "ppl": 5.0},
        "cells": [
            {
                "method": "norm",
                "share": 0.5,
                "tokens_budget": 100,
                "ppl": 9.0,
                "kept": 0.5,
            },
            {
                "method": "guided+distill",
                "share": 0.5,
                "tokens_budget": 100,
                "ppl": 6.0,
                "kept": 0.499,
                "after_cut_ppl": 7.0,
            },
        ],
    }
    result["base_tokens"] = 1000
    text = b9.table(result)
    assert (
        "| 0.5 | 100 (10.0% of the original's) | 9.000 (1.80x; 0.500 kept) "
        "| not run | not run | 6.000 (1.20x; 0.499 kept), 7.000"
    ) in text
    assert "| original (2.00 M) | 1,000 | 5.000 |" in text


def test_b9_page_table_is_the_json_it_was_made_from():
    import json

    from benchmarks import b9_decoder_quality as b9

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(
        os.path.join(root, "docs", "benchmarks_b9_decoder_quality.json")
    ) as f:
        result = json.load(f)
    with open(os.path.join(root, "docs", "benchmarks.md")) as f:
        page = f.read()
    assert b9.section(result, result["command"]) in page
    assert os.path.getsize(os.path.join(root, "docs", b9.PLOT)) > 10_000
    for cell in result["cells"]:
        assert cell["class"] == "LlamaCausalLM"
        assert abs(cell["kept"] - cell["share"]) < 0.01


def test_command_line_quotes_what_a_shell_would_split():
    from benchmarks import report

    assert (
        report.command_line("benchmarks.b9", ["--out", "a b.json"])
        == "PYTHONPATH=. python -m benchmarks.b9 --out 'a b.json'"
    )
    assert report.command_line("benchmarks", [], prefix="python -m") == (
        "python -m benchmarks"
    )


def _queue_with_one_cell_done(tmp_path):
    """The queue's arguments over a JSON holding one cell: seed 0's
    l1_oneshot at 4x, E=2 (references in `tmp_path`)."""
    import json

    from benchmarks import b6_queue

    results = tmp_path / "b6.json"
    done = {
        "arch": "resnet20",
        "budget": "flops/4x",
        "method": "l1_oneshot",
        "variant": "default",
        "seed": 0,
        "extra_epochs": 2,
    }
    results.write_text(json.dumps({"references": [], "cells": [done]}))
    argv = ["--cifar-dir", "c", "--ref-dir", str(tmp_path)]
    return b6_queue.parse_args(argv + ["--json", str(results)])


def _pretend(ran, code=0):
    """A queue runner that records each command and, for a reference,
    leaves its finished files as a real run would."""
    from benchmarks import b6_protocol as protocol

    def runner(command):
        ran.append(command)
        if command[2] == "benchmarks.b6_reference" and not code:
            value = {
                f: command[command.index(f) + 1]
                for f in ("--ref-dir", "--seed")
            }
            for path in protocol.reference_files(
                value["--ref-dir"], "resnet20", int(value["--seed"]), 40, 0.1
            ):
                open(path, "w").close()
        return code

    return runner


def test_b6_queue_skips_what_is_done_and_stops_for_unmade_choices(
    tmp_path, monkeypatch
):

    from benchmarks import b6_protocol as protocol
    from benchmarks import b6_queue

    queue = (
        ("reference", 0),
        ("reference", 1),
        ("cells", "tune", "0", "2", "4x", "guided,l1_oneshot"),
        ("cells", "test", "1", "2", "4x", "guided,l1_oneshot"),
        ("cells", "tune", "0", "2", "2x", "l1_oneshot"),
    )
    monkeypatch.setattr(protocol, "QUEUE", queue)
    monkeypatch.setattr(protocol, "CHOSEN", {})
    for path in protocol.reference_files(tmp_path, "resnet20", 0, 40, 0.1):
        open(path, "w").close()  # seed 0's reference is finished
    args = _queue_with_one_cell_done(tmp_path)
    ran, said = [], []
    code = b6_queue.run(args, log=said.append, runner=_pretend(ran))
    # The tuning cells and then seed 1's reference ran (just before the
    # cells that need it); the test cells need a choice for guided
    # (l1_oneshot has no variants), so the queue went past them to the
    # next step and says so in its exit code.
    assert code == b6_queue.NEEDS_CHOICES
    assert [c[2] for c in ran] == [
        "benchmarks.b6_cifar",
        "benchmarks.b6_reference",
        "benchmarks.b6_cifar",
    ]
    assert ran[0][ran[0].index("--methods") + 1] == "guided,l1_oneshot"
    assert ran[1][ran[1].index("--seed") + 1] == "1"
    assert ran[2][ran[2].index("--budgets") + 1] == "2x"
    assert "step 1/5 (reference, seed 0): done" in said
    assert any(
        line.startswith("step 3/5 (tune cells") and "1 cell(s) left" in line
        for line in said
    )
    choice = [line for line in said if "no variant is chosen" in line]
    assert len(choice) == 1
    assert "guided|flops/4x|2" in choice[0]
    assert "l1_oneshot|" not in choice[0]
    # A choice by method and budget holds for every E; a failing step
    # stops the queue with its exit code.
    monkeypatch.setattr(protocol, "CHOSEN", {"guided|flops/4x": "kd"})
    ran.clear()
    code = b6_queue.run(
        args, log=said.append, runner=lambda c: ran.append(c) or 5
    )
    assert code == 5
    assert len(ran) == 1
    assert b6_queue.pending(queue[3], args)[0][:3] == (
        "flops/4x",
        "guided",
        "kd",
    )
    # Nothing runs in a dry run.
    dry = b6_queue.parse_args(["--dry-run", "--json", args.json])
    assert args.cifar_dir == "c"
    assert dry.cifar_dir == ""


def test_b6_queue_lanes_split_references_from_cells(tmp_path, monkeypatch):
    import json

    from benchmarks import b6_protocol as protocol
    from benchmarks import b6_queue

    queue = (
        ("reference", 1),
        ("reference", 2),
        ("cells", "test", "1,2", "2", "4x", "l1_oneshot"),
    )
    monkeypatch.setattr(protocol, "QUEUE", queue)
    for path in protocol.reference_files(tmp_path, "resnet20", 1, 40, 0.1):
        open(path, "w").close()  # seed 1's reference is finished
    results = tmp_path / "b6.json"
    results.write_text(json.dumps({"references": [], "cells": []}))
    argv = ["--cifar-dir", "c", "--ref-dir", str(tmp_path)]
    argv += ["--json", str(results), "--threads", "1"]
    ran, said = [], []

    def runner(command):
        ran.append(command)
        return 0

    lane = b6_queue.parse_args(argv + ["--lane", "cells"])
    assert b6_queue.run(lane, log=said.append, runner=runner) == 0
    # The cells lane trains no reference and runs seed 1 only.
    assert [c[2] for c in ran] == ["benchmarks.b6_cifar"]
    assert ran[0][ran[0].index("--seeds") + 1] == "1"
    assert ran[0][ran[0].index("--threads") + 1] == "1"
    assert "step 2/3 (reference, seed 2): not in the cells lane" in said[1]
    assert "on seeds 1 (their references are finished)" in said[2]
    ran.clear()
    lane = b6_queue.parse_args(argv + ["--lane", "references"])
    assert b6_queue.run(lane, log=said.append, runner=runner) == 0
    assert [c[2] for c in ran] == ["benchmarks.b6_reference"]
    assert ran[0][ran[0].index("--seed") + 1] == "2"
    # The reference step's command parses, and names the results file.
    from benchmarks import b6_reference

    assert b6_reference.parse_args(ran[0][3:]).json == str(results)
    # Before any reference is finished, the cells lane waits.
    for path in protocol.reference_files(tmp_path, "resnet20", 1, 40, 0.1):
        os.remove(path)
    ran.clear()
    said.clear()
    lane = b6_queue.parse_args(argv + ["--lane", "cells"])
    assert b6_queue.run(lane, log=said.append, runner=runner) == 0
    assert ran == []
    assert said[-1] == (
        "step 3/3 (test cells: seeds 1,2, E=2, 4x, l1_oneshot): 2 cell(s) "
        "left; they wait for the references of seeds 1, 2"
    )


def test_b6_queue_trains_the_references_the_next_cells_need_first(
    tmp_path, monkeypatch
):

    from benchmarks import b6_protocol as protocol
    from benchmarks import b6_queue

    queue = (
        ("reference", 0),
        ("cells", "tune", "0", "2", "4x", "l1_oneshot"),
        ("reference", 1),
        ("reference", 2),
        ("cells", "test", "1", "2", "4x", "l1_oneshot"),
        ("cells", "tune", "0", "2", "2x", "l1_oneshot"),
    )
    monkeypatch.setattr(protocol, "QUEUE", queue)
    args = _queue_with_one_cell_done(tmp_path)
    ran, said = [], []
    b6_queue.run(args, log=said.append, runner=_pretend(ran))

    # Seed 0's first cells are done: its reference waits for the 2x tuning,
    # after seed 1's reference and test cells. No cell needs seed 2.
    def what(command):
        flag = "--seed" if "--seed" in command else "--seeds"
        return command[2], command[command.index(flag) + 1]

    assert [what(c) for c in ran] == [
        ("benchmarks.b6_reference", "1"),
        ("benchmarks.b6_cifar", "1"),
        ("benchmarks.b6_reference", "0"),
        ("benchmarks.b6_cifar", "0"),
    ]
    assert said[0] == "step 4/6 (reference, seed 2): no cell left needs it yet"
    # A step with nothing left is done, finished references or not.
    assert (
        said[1] == "step 2/6 (tune cells: seeds 0, E=2, 4x, l1_oneshot): done"
    )


def test_b6_until_stops_before_work_that_would_end_too_late(
    tmp_path, monkeypatch
):
    import datetime
    import json

    from benchmarks import b6_protocol as protocol
    from benchmarks import b6_queue
    from benchmarks import b6_results

    five = datetime.datetime(2026, 12, 7, 5, 0)
    at = protocol.parse_until("05:50", now=five)
    assert at - five.timestamp() == 50 * 60
    # A time of day already past is tomorrow's.
    assert protocol.parse_until("04:50", now=five) - five.timestamp() == (
        23 * 3600 + 50 * 60
    )
    assert protocol.parse_until("2026-12-07T05:50") == at
    with pytest.raises(ValueError, match="Received: 'soon'"):
        protocol.parse_until("soon")
    protocol.check_until(at, 50 * 60, "a cell", now=five.timestamp())
    protocol.check_until(at, None, "a first cell", now=five.timestamp())
    # Unknown length: it runs only while the deadline has not passed.
    with pytest.raises(
        protocol.Deadline, match="a first cell has no timed run.*passed 1 s ago"
    ):
        protocol.check_until(at, None, "a first cell", now=at + 1)
    with pytest.raises(protocol.Deadline, match="a cell takes about 3001 s"):
        protocol.check_until(at, 50 * 60 + 1, "a cell", now=five.timestamp())
    # A cell is expected to take its longest like, else its method's
    # longest scaled by the extra epochs.
    path = tmp_path / "b6.json"
    cells = [
        {
            "arch": "resnet20",
            "method": "guided",
            "extra_epochs": 2,
            "seconds": s,
        }
        for s in (600, 700)
    ]
    path.write_text(json.dumps({"references": [], "cells": cells}))
    expect = b6_results.expected_seconds
    assert expect(str(path), "resnet20", "guided", 2) == 700
    assert expect(str(path), "resnet20", "guided", 8) == 2800
    # A method with no cell yet: as long as the longest of any method.
    assert expect(str(path), "resnet20", "l1_oneshot", 2) == 700
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"references": [], "cells": []}))
    assert expect(str(empty), "resnet20", "guided", 2) is None
    # Cells timed on the same machine come first.
    here = {**cells[0], "seconds": 300, "machine": "Xeon, 2 cores, 1 thread"}
    path.write_text(json.dumps({"references": [], "cells": cells + [here]}))
    assert expect(str(path), "resnet20", "guided", 2, here["machine"]) == 300
    assert expect(str(path), "resnet20", "guided", 8, here["machine"]) == 1200
    assert expect(str(path), "resnet20", "guided", 2, "another") == 700
    # Of those, the cells of the same variant (a strength that breaks the
    # network can take twice the time of the chosen one).
    slow = {**cells[0], "variant": "kd", "seconds": 900}
    path.write_text(json.dumps({"references": [], "cells": cells + [slow]}))
    assert expect(str(path), "resnet20", "guided", 2) == 900
    assert expect(str(path), "resnet20", "guided", 2, None, "default") == 700
    assert expect(str(path), "resnet20", "guided", 2, None, "kd") == 900
    assert expect(str(path), "resnet20", "guided", 2, None, "half") == 900
    # A method with no cell of its own: the longest of any variant.
    assert expect(str(path), "resnet20", "li_l1", 2, None, "default") == 900
    # The queue hands --until to its steps; when one left work, it goes on
    # to the cells whose references are finished (what may still fit).
    queue = (
        ("reference", 1),
        ("cells", "test", "1", "2", "4x", "l1_oneshot"),
        ("cells", "tune", "0", "2", "2x", "l1_oneshot"),
    )
    monkeypatch.setattr(protocol, "QUEUE", queue)
    for name in protocol.reference_files(tmp_path, "resnet20", 0, 40, 0.1):
        open(name, "w").close()  # seed 0's reference is finished
    args = _queue_with_one_cell_done(tmp_path)
    args.until = at
    ran, said = [], []

    def runner(command):
        ran.append(command)
        return (
            protocol.UNTIL_EXIT if "benchmarks.b6_reference" in command else 0
        )

    assert b6_queue.run(args, log=said.append, runner=runner) == 4
    assert [c[2] for c in ran] == [
        "benchmarks.b6_reference",
        "benchmarks.b6_cifar",
    ]
    assert ran[0][ran[0].index("--until") + 1] == "2026-12-07T05:50:00"
    assert ran[1][ran[1].index("--seeds") + 1] == "0"
    assert any("left work that would end after --until" in s for s in said)
    assert (
        "step 2/3 (test cells: seeds 1, E=2, 4x, l1_oneshot): 1 cell(s) "
        "left; they wait for the references of seed 1"
    ) in said


def test_b6_two_grids_share_their_cells(tmp_path):
    from benchmarks import b6_cifar
    from benchmarks import b6_results

    path = str(tmp_path / "b6.json")
    argv = ["--ref-dir", str(tmp_path), "--json", path, "--role", "tune"]
    argv += ["--seeds", "0", "--extra-epochs", "2", "--budgets", "4x"]
    args = b6_cifar.parse_args(argv + ["--methods", "l1_oneshot"])
    cell = ("flops/4x", "l1_oneshot", "default", 0, 2)
    said = []
    with b6_results.claim(path, "resnet20", cell) as mine:
        assert mine
        with b6_results.claim(path, "resnet20", cell) as theirs:
            assert not theirs
        # Another grid skips the cell this one holds (it would otherwise
        # load seed 0's reference, which does not exist here).
        b6_cifar.run(args, data={}, log=said.append)
    assert said[-1] == (
        "cell l1_oneshot:default flops/4x E=2 seed 0: another process is "
        "running it or has run it; skipped"
    )
    # Once the JSON has the cell, nobody claims it.
    row = dict(zip(b6_results.KEY, ("resnet20", *cell)))
    b6_results.record(path, cell=row)
    with b6_results.claim(path, "resnet20", cell) as mine:
        assert not mine


def test_b6_a_reference_in_training_is_left_to_its_process(
    tmp_path, monkeypatch
):
    from benchmarks import b6_protocol as protocol
    from benchmarks import b6_queue

    key = (str(tmp_path), "resnet20", 2, 40, 0.1)
    assert not protocol.reference_busy(*key)
    with protocol.training_reference(*key) as mine:
        assert mine
        # flock locks an open file: another open of it, here as in another
        # process, cannot take the lock.
        assert protocol.reference_busy(*key)
        queue = (
            ("reference", 2),
            ("reference", 3),
            ("cells", "test", "2,3", "2", "4x", "l1_oneshot"),
        )
        monkeypatch.setattr(protocol, "QUEUE", queue)
        # A JSON of its own: the repository's fills up as cells run.
        results = tmp_path / "b6.json"
        results.write_text('{"references": [], "cells": []}')
        args = b6_queue.parse_args(
            ["--cifar-dir", "c", "--ref-dir", str(tmp_path)]
            + ["--lane", "references", "--json", str(results)]
        )
        ran, said = [], []
        b6_queue.run(args, log=said.append, runner=lambda c: ran.append(c) or 0)
    # Seed 2 is being trained elsewhere: the lane goes on to seed 3.
    assert [c[c.index("--seed") + 1] for c in ran] == ["3"]
    assert "another process is training it now; skipped" in said[0]
    assert not protocol.reference_busy(*key)


def test_b6_a_seed_trained_again_keeps_the_first_curve(tmp_path):
    import json

    from benchmarks import b6_reference

    curve = tmp_path / "resnet20_seed0.json"
    assert b6_reference.own_curve(str(curve)) == str(curve)
    curve.write_text(json.dumps({"epochs_done": [{"epoch": 1}]}))
    assert b6_reference.own_curve(str(curve)) == str(curve)  # its own
    curve.write_text(json.dumps({"epochs_done": [], "final": {}}))
    second = tmp_path / "resnet20_seed0_training2.json"
    assert b6_reference.own_curve(str(curve)) == str(second)
    second.write_text(json.dumps({"epochs_done": [], "final": {}}))
    third = str(tmp_path / "resnet20_seed0_training3.json")
    assert b6_reference.own_curve(str(curve)) == third
    assert b6_reference.own_curve(None) is None


def _tiny_b6_splits(seed):
    """Random CIFAR-shaped splits (256 training, 64 validation and 64 test
    images) for the B6 runs of these tests."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 256).astype(np.uint8),
        "x_val": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
        "y_val": rng.integers(0, 10, 64).astype(np.uint8),
        "x_test": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 64).astype(np.uint8),
    }


@pytest.mark.slow
def test_b6_reference_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import json

    from benchmarks import b6_cifar
    from benchmarks import b6_protocol
    from benchmarks import b6_reference

    data = _tiny_b6_splits(0)

    def train(ref_dir, log=lambda message: None, curve=None, until=None):
        return b6_reference.train_reference(
            data, "resnet20", 0, 2, 0.05, 1, str(ref_dir), curve, log, until
        )

    whole, _ = train(tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop_after_the_first_epoch(message):
        if "epoch 1/2" in message:
            raise Stop

    with pytest.raises(Stop):
        train(tmp_path / "split", stop_after_the_first_epoch)
    # No epoch starts that would end after `until` (as long as the last).
    with pytest.raises(b6_protocol.Deadline, match="epoch 2 takes about"):
        train(tmp_path / "split", until=__import__("time").time())
    said = []
    kept = tmp_path / "split" / "resnet20_seed0_e2_lr0.05.curve.json"
    first = json.loads(kept.read_text())["epochs_done"][0]
    # A longer curve in the working tree from another run (a state lost
    # with its machine) is not the state's own: the kept one serves.
    stale = tmp_path / "stale_curve.json"
    rows = [{"epoch": n, "val": 0.99} for n in (1, 2, 3)]
    stale.write_text(json.dumps({"epochs_done": rows}))
    resumed, info = train(tmp_path / "split", said.append, str(stale))
    assert "resuming after epoch 1" in said[0]
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    curve = json.loads(kept.read_text())
    assert [row["epoch"] for row in curve["epochs_done"]] == [1, 2]
    # A finished reference names its weights, and keeps no training state.
    final, _ = b6_protocol.reference_files(
        str(tmp_path / "split"), "resnet20", 0, 2, 0.05
    )
    assert info["weights_sha256"] == b6_reference.weights_id(final)
    assert not os.path.exists(final.replace(".weights.h5", ".state.keras"))
    # A grid loading it puts that name in its reference row.
    args = b6_cifar.parse_args(
        ["--ref-dir", str(tmp_path / "split"), "--ref-epochs", "2"]
        + ["--ref-lr", "0.05"]
    )
    _, row = b6_cifar.reference(args, data, 0, said.append)
    assert row["weights_sha256"] == info["weights_sha256"]
    assert curve["epochs_done"][0] == first
    assert json.loads(stale.read_text())["epochs_done"][0] == first
    # Run as a step of the queue, a finished reference puts the same row
    # in the results file, before any cell has started from it.
    monkeypatch.setattr(b6_reference.cifar, "load", lambda folder: data)
    monkeypatch.setattr(b6_reference.cifar, "split", lambda loaded: loaded)
    results = tmp_path / "b6.json"
    command = ["--ref-dir", str(tmp_path / "split"), "--epochs", "2"]
    command += ["--lr", "0.05", "--warmup", "1", "--json", str(results)]
    assert b6_reference.main(command) == 0
    assert json.loads(results.read_text())["references"] == [row]


@pytest.mark.slow
def test_b6_a_cell_started_from_a_stored_cut_computes_what_a_fresh_one_does(
    tmp_path,
):
    from benchmarks import b6_cifar

    data = _tiny_b6_splits(1)
    cache = str(tmp_path / "cuts")

    def cells(name, methods, *extra):
        argv = ["--quick", "--json", str(tmp_path / name), "--methods"]
        return b6_cifar.main(argv + [methods, *extra], data=data)["cells"]

    # guided stores its cut; ft_low (the same first phase, its own
    # fine-tuning rate) starts from it.
    first, twin = cells(
        "cached.json", "guided,guided:ft_low", "--cut-cache", cache
    )
    assert (first["cut_from_cache"], twin["cut_from_cache"]) == (False, True)
    assert twin["cut_seconds"] == first["cut_seconds"]
    assert twin["seconds"] >= twin["cut_seconds"]
    assert len(os.listdir(cache)) == 2  # one cut: its model and its info
    # ft_low trained from its own first phase, with no cache, ends the
    # same: same cut, same fine-tuning.
    (fresh,) = cells("fresh.json", "guided:ft_low")
    assert fresh["cut_from_cache"] is False
    for name in ("after_cut_val", "after_cut_test", "val", "test", "widths"):
        assert fresh[name] == twin[name], name
    assert fresh["val_per_finetune_epoch"] == twin["val_per_finetune_epoch"]
    # A stored cut that no longer gives its recorded accuracy is dropped
    # and the phase trained again.
    info = next(p for p in os.listdir(cache) if p.endswith(".json"))
    with open(os.path.join(cache, info)) as handle:
        stored = json.load(handle)
    stored["info"]["after_cut_val"] += 0.5
    with open(os.path.join(cache, info), "w") as handle:
        json.dump(stored, handle)
    (again,) = cells("again.json", "guided:ft_low", "--cut-cache", cache)
    assert again["cut_from_cache"] is False
    assert again["val"] == fresh["val"]


def test_b6_throughput_keeps_one_run_per_machine_and_reads_the_old_layout(
    tmp_path,
):
    from benchmarks import b6_throughput

    path = tmp_path / "throughput.json"

    def run(cpu, threads, rate):
        return {"machine": {"cpu": cpu}, "threads": threads, "plain": rate}

    path.write_text(json.dumps(run("AMD EPYC", None, 1)))  # one run, no list
    merged = b6_throughput.merge(str(path), run("Xeon", 1, 2))
    assert [r["plain"] for r in merged["runs"]] == [1, 2]
    path.write_text(json.dumps(merged))
    merged = b6_throughput.merge(str(path), run("Xeon", 1, 3))
    assert [r["plain"] for r in merged["runs"]] == [1, 3]
    merged = b6_throughput.merge(str(path), run("Xeon", 2, 4))
    assert [r["plain"] for r in merged["runs"]] == [1, 2, 4]
