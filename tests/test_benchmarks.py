"""Smoke test of the benchmark harness (benchmarks/), at toy size.

Keeps `python -m benchmarks` from rotting: the data split, the idx reader,
the reference rebuild against the masked model, and one B1 method end to
end on scikit-learn digits. Speed is measured by the benchmarks, never
asserted here.
"""

import gzip
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
        8000, 1000, 1000]
    np.testing.assert_array_equal(first["y_val"], second["y_val"])
    together = np.concatenate([first["y_train"], first["y_val"],
                               first["y_test"]])
    assert len(np.unique(together)) == 10000
    np.testing.assert_array_equal(first["x_test"][:, 0], first["y_test"])


def test_read_idx_roundtrip_and_bad_magic(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = os.path.join(tmp_path, "images.gz")
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2, 3, 4)
                + images.tobytes())
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
    model = models_lib.build(name, (8, 8, 1), widths=(6, 5, 7)[
        : 2 if name == "lenet300" else 3])
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    model(x)
    keep = models_lib.keep_by_fraction(models_lib.unit_norms(model), 0.5)
    masked = models_lib.masked_copy(model, keep)
    small = models_lib.reference_rebuild(masked, keep, name, (8, 8, 1))
    assert models_lib.kept_widths(model, keep) == tuple(
        layer.kernel.shape[-1] for layer, _ in
        models_lib.prunable_layers(small))
    np.testing.assert_allclose(common.logits(small, x),
                               common.logits(masked, x), atol=1e-5)


def test_matched_budget_points_end_to_end_on_digits(tmp_path):
    data = data_lib.load(None)
    assert data["name"] == "sklearn-digits"
    path = str(tmp_path / "b1.json")
    messages = []
    result = b1_budget.run(data, "toy", log=messages.append,
                           methods=["magnitude", "guided"],
                           models=["lenet300"], path=path,
                           budgets=["units=66"])
    points = result["models"]["lenet300"]["points"]
    assert sorted(points) == ["guided|units=66|0", "magnitude|units=66|0"]
    for point in points.values():
        # Both land exactly on the budget, with no layer emptied.
        assert point["units"] == 66 and min(point["widths"]) >= 1
        assert 0.0 <= point["test"] <= 1.0
    # Resumable: a second run finds every point done and runs nothing.
    again = b1_budget.run(data, "toy", log=messages.append,
                          methods=["magnitude", "guided"],
                          models=["lenet300"], path=path,
                          budgets=["units=66"])
    assert again["models"]["lenet300"]["points"] == points
    assert sum("reference" in m for m in messages) == 1
    table = "\n".join(b1_budget.markdown(again))
    assert "| guided |" in table and "66 units" in table


def test_targets_say_reached_or_not_with_numbers():
    def point(test, units=66, flops=1000, params=100):
        return {"test": test, "units": units, "flops": flops,
                "params": params, "widths": [units]}

    b1 = {"models": {"lenet300": {
        "reference": {"0": {"test": 0.96, "units": 400, "params": 10,
                            "flops": 10}},
        "points": {
            "guided|units=66|0": point(0.957),
            "magnitude_iterative|units=66|0": point(0.953),
        },
    }}}
    lines = b1_budget.targets(b1)
    assert lines[0].endswith("guided 95.70 vs 96.00 (0.30 points "
                             "below): reached")
    assert lines[1].endswith(": reached")
    assert "units=66: 95.70 vs magnitude_iterative 95.30" in lines[1]
    b1["models"]["lenet300"]["points"]["guided|units=66|0"] = point(0.962)
    assert "guided 96.20 vs 96.00 (0.20 points above): reached" in (
        b1_budget.targets(b1)[0])
    b1["models"]["lenet300"]["points"]["guided|units=66|0"] = point(0.95)
    lines = b1_budget.targets(b1)
    assert lines[0].endswith("not reached, by 0.50 points")
    assert lines[1].endswith("not reached (0 of 1)")


def test_cut_by_scores_meets_a_flops_budget():
    model = models_lib.build("lenet5", (8, 8, 1), widths=(6, 8, 10))
    model(np.zeros((1, 8, 8, 1), "float32"))
    start = b1_budget._measure(model, "flops")
    small = b1_budget._cut_by_scores(model, b1_budget._norm_scores(model),
                                     {"flops": 0.3})
    flops = b1_budget._measure(small, "flops")
    assert flops <= 0.3 * start
    assert flops >= 0.15 * start


def test_b2_aim_relative_to_another_variant():
    from benchmarks import report

    b2 = {"median_seconds": {"plain": 1.0, "regularizer": 1.2,
                             "keras_l1": 1.1},
          "fastest_seconds": {"plain": 1.0, "regularizer": 1.2,
                              "keras_l1": 1.1},
          "ratios": {"regularizer": 1.2, "keras_l1": 1.1},
          "aims": {"regularizer": ["keras_l1", 0.03]}, "skipped": {}}
    lines = report.b2_table(b2)
    assert "| 1.200 | <= keras_l1 + 0.03 = 1.130 (not reached) |" in (
        lines[3])
    b2["ratios"]["regularizer"] = 1.12
    assert "= 1.130 (reached)" in report.b2_table(b2)[3]
