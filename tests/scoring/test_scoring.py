"""Tests for keras_guided.scoring: unit importance and plans."""

import keras
import numpy as np
import pytest
from keras import layers

import keras_guided
from keras_guided import scoring


def _model():
    inputs = keras.Input((3,))
    x = layers.Dense(4, name="a")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Dense(2, name="b")(x)
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    model.get_layer("a").set_weights(
        [
            np.array(
                [
                    [1.0, 0.0, 2.0, 0.0],
                    [1.0, 0.0, 2.0, 0.0],
                    [1.0, 0.0, 2.0, 0.0],
                ],
                "float32",
            ),
            np.array([1.0, 5.0, 2.0, 0.0], "float32"),
        ]
    )
    model.get_layer("bn").set_weights(
        [
            np.ones(4, "float32"),
            np.zeros(4, "float32"),
            np.full(4, 9.0, "float32"),
            np.full(4, 9.0, "float32"),
        ]
    )
    return model


def test_gather_units_with_tuple_axis():
    kernel = np.arange(2 * 3 * 2).reshape(1, 2, 3, 2)  # depthwise (.., C, m)
    rows = scoring.gather_units(kernel, (-2, -1), np.array([[0, 1], [4, 5]]))
    # Row: every entry of the unit, position by position.
    np.testing.assert_array_equal(rows, [[0, 6, 1, 7], [4, 10, 5, 11]])


def test_unit_scores_rms_and_plain():
    groups = keras_guided.find_unit_groups(_model())
    # Unit 0 of group 0: kernel 1,1,1, bias 1, gamma 1, beta 0 -> 5 / 6.
    scores = scoring.unit_scores(groups)
    np.testing.assert_allclose(scores[0][0], np.sqrt(5.0 / 6.0), rtol=1e-6)
    plain = scoring.unit_scores(groups, normalize=False)
    np.testing.assert_allclose(plain[0][0], np.sqrt(5.0), rtol=1e-6)
    # Statistics (moving mean 9) never count.
    np.testing.assert_allclose(plain[0][3], 1.0, rtol=1e-6)
    with_consumers = scoring.unit_scores(
        groups, normalize=False, include_consumers=True
    )
    assert np.all(with_consumers[0] >= plain[0])


def test_dead_units_ignore_bias_and_tolerance():
    groups = keras_guided.find_unit_groups(_model())
    dead = scoring.dead_units(groups)
    # Units 1 and 3 have zero incoming weights (unit 1 has bias 5).
    assert dead[0].tolist() == [False, True, False, True]
    assert scoring.dead_units(groups, tolerance=1.5)[0].tolist() == [
        True,
        True,
        False,
        True,
    ]


def test_threshold_plan_respects_min_units_and_round_to():
    groups = keras_guided.find_unit_groups(_model())
    scores = [
        np.array([0.5, 0.0, 2.0, 0.1]),
        np.array([1.0, 1.0]),
        np.array([1.0]),
    ]
    plan = scoring.plan_from_threshold(groups, 0.2, scores=scores)
    assert {k: v.tolist() for k, v in plan.items()} == {0: [0, 2]}
    plan = scoring.plan_from_threshold(groups, 10.0, scores=scores, min_units=3)
    assert plan[0].tolist() == [0, 2, 3] and 1 not in plan  # b has 2
    plan = scoring.plan_from_threshold(groups, 1.0, scores=scores, round_to=2)
    assert plan[0].tolist() == [0, 2]
    assert 2 not in plan  # the output group is not prunable
    with pytest.raises(ValueError, match="Received: threshold=-1"):
        scoring.plan_from_threshold(groups, -1)


def test_target_plans_by_units_params_and_flops():
    model = _model()
    groups = keras_guided.find_unit_groups(model)
    plan = scoring.plan_from_target(groups, model, 0.5)
    removed = sum(groups[i].num_units - len(k) for i, k in plan.items())
    assert removed == 3  # half of the 6 prunable units
    # The dead units go first.
    assert 1 not in plan[0] and 3 not in plan[0]
    plan = scoring.plan_from_target(groups, model, {"params": 0.8})
    costs = scoring.unit_costs(groups, model, "params")
    # Unit of group 0: 3 kernel + 1 bias + 4 BN + 2 next-kernel entries.
    assert costs[0].tolist() == [10.0] * 4
    assert costs[1].tolist() == [6.0, 6.0]  # 4 kernel + 1 bias + 1 row
    flops = scoring.unit_costs(groups, model, "flops")
    assert flops[0].tolist() == [6.0 + 4.0] * 4
    # Keeping everything still drops the two dead units (they are free).
    plan = scoring.plan_from_target(groups, model, 1.0)
    assert {k: v.tolist() for k, v in plan.items()} == {0: [0, 2]}


@pytest.mark.parametrize(
    "target",
    [
        0.0,
        1.5,
        -0.1,
        "half",
        {"bytes": 0.5},
        {"units": 0.2, "params": 0.2},
        True,
    ],
)
def test_bad_targets(target):
    model = _model()
    groups = keras_guided.find_unit_groups(model)
    with pytest.raises(
        ValueError,
        match=r"`target` must be the fraction to "
        r"keep, a float in \(0, 1\]",
    ):
        scoring.plan_from_target(groups, model, target)


def test_unreachable_target_and_bad_limits():
    model = _model()
    groups = keras_guided.find_unit_groups(model)
    with pytest.raises(
        ValueError,
        match=r"Cannot keep only 50% of the units: "
        r"removing every prunable unit allowed by "
        r"min_units=2 keeps 66.7%",
    ):
        scoring.plan_from_target(groups, model, 0.5, min_units=2)
    with pytest.raises(ValueError, match=r"Received: round_to=0"):
        scoring.plan_from_target(groups, model, 0.5, round_to=0)
    with pytest.raises(ValueError, match=r"Received: min_units=1.5"):
        scoring.check_limits(1.5, None)
    with pytest.raises(ValueError, match=r"Received: min_units=0.0"):
        scoring.check_limits(0.0, None)
    with pytest.raises(ValueError, match=r"Received: min_units=True"):
        scoring.check_limits(True, None)


@pytest.mark.parametrize(
    "min_units, num_units, expected",
    [
        (1, 10, 1),
        (3, 10, 3),
        (30, 10, 10),
        (0.25, 10, 3),
        (0.25, 8, 2),
        (0.01, 10, 1),
        (1.0, 7, 7),
    ],
)
def test_floor_units_counts_and_shares(min_units, num_units, expected):
    assert scoring.floor_units(min_units, num_units) == expected


def test_a_share_floor_holds_in_every_group_of_a_target_plan():
    # Layer "a" has two strong units and fourteen weak ones: by score a
    # 30 % units target keeps 2 of its 16; a 0.25 share floor keeps 4.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = layers.Dense(16, name="a")(inputs)
    x = layers.Dense(16, name="b")(x)
    model = keras.Model(inputs, layers.Dense(2, name="out")(x))
    kernel, bias = model.get_layer("a").get_weights()
    scale = np.full(16, 0.05, "float32")
    scale[:2] = 1.0
    model.get_layer("a").set_weights([kernel * scale, bias * 0])
    groups = keras_guided.find_unit_groups(model)
    plain = scoring.plan_from_target(groups, model, {"units": 0.3})
    floored = scoring.plan_from_target(
        groups, model, {"units": 0.3}, min_units=0.25
    )
    assert len(plain[0]) < 4
    assert len(floored[0]) >= 4 and len(floored[1]) >= 4
    assert len(floored[0]) + len(floored[1]) == len(plain[0]) + len(plain[1])


def test_target_always_removes_dead_units():
    # 3 of 4 hidden units are dead: a target keeping 75 % of the units still
    # removes all three, since removing them changes nothing.
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="hidden"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[:, 1:] = 0.0
    model.get_layer("hidden").set_weights([kernel, bias])
    groups = keras_guided.find_unit_groups(model)
    plan = scoring.plan_from_target(groups, model, 0.75)
    assert plan == {0: [0]}


# ------------------------------------------ targets mean what they say
def _mlp():
    return keras.Sequential(
        [
            keras.Input((32,)),
            keras.layers.Dense(64),
            keras.layers.Dense(64),
            keras.layers.Dense(64),
            keras.layers.Dense(10),
        ]
    )


def _cnn():
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(24, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def _resnet():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    for _ in range(2):
        y = keras.layers.Conv2D(24, 3, padding="same", activation="relu")(x)
        y = keras.layers.BatchNormalization()(y)
        y = keras.layers.Conv2D(16, 3, padding="same")(y)
        y = keras.layers.BatchNormalization()(y)
        x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.mark.parametrize(
    "build", [_mlp, _cnn, _resnet], ids=["mlp", "cnn", "resnet"]
)
@pytest.mark.parametrize(
    "target",
    [{"flops": 0.25}, {"flops": 0.5}, {"params": 0.5}, {"params": 0.3}],
)
def test_kept_cost_is_at_most_the_target_and_close(build, target):
    # The 32-64-64-64-10 MLP used to keep 38 % of the FLOPs for a 25 %
    # target: a weight between two pruned layers was counted twice.
    model = build()
    metric, fraction = next(iter(target.items()))
    count = (
        keras_guided.stats.count_flops
        if metric == "flops"
        else keras_guided.stats.count_params
    )
    pruned = keras_guided.prune_model(model, target=target, verify=False)
    kept = count(pruned) / count(model)
    assert kept <= fraction
    # Close: within what one unit costs (the finishing step takes, among
    # the next candidates, the one that lands nearest below the target).
    groups = keras_guided.find_unit_groups(model)
    largest = max(
        float(np.max(c))
        for g, c in zip(groups, scoring.unit_costs(groups, model, metric))
        if g.prunable
    )
    assert kept >= fraction - largest / count(model)
    assert kept >= fraction - 0.03
    # KeptCost predicts what the rebuilt model keeps, exactly.
    plan = scoring.plan_from_target(groups, model, target)
    cost = scoring.KeptCost(groups, model, metric)
    for index, kept_units in plan.items():
        dropped = np.setdiff1d(np.arange(groups[index].num_units), kept_units)
        for unit in dropped:
            cost.remove(groups[index], int(unit))
    assert cost.total == count(model)
    assert cost.kept == count(pruned)


def test_count_targets_share_the_callback_grammar():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(12),
            keras.layers.Dense(8),
            keras.layers.Dense(2),
        ]
    )
    small = keras_guided.prune_model(model, target={"units": 7})
    assert small.layers[0].units + small.layers[1].units == 7
    params = keras_guided.stats.count_params(model)
    small = keras_guided.prune_model(model, target={"params": params // 2})
    kept = keras_guided.stats.count_params(small)
    assert kept <= params // 2
    assert kept >= 0.4 * params


def _module_level_imports(inside_functions=False):
    """{module: keras_guided modules it imports at module level}.

    Modules are named by their dotted path inside the package:
    `"scoring"` (a subpackage's `__init__`), `"scoring._targets"`,
    `"latency"`. With `inside_functions=True`, imports inside functions
    count too.
    """
    import ast
    import os

    package = os.path.dirname(keras_guided.__file__)
    files = {}
    for folder, _, filenames in os.walk(package):
        prefix = os.path.relpath(folder, package).replace(os.sep, ".")
        for f in filenames:
            if not f.endswith(".py"):
                continue
            parts = [] if prefix == "." else prefix.split(".")
            if f != "__init__.py" or not parts:
                parts.append(f[:-3])
            files[".".join(parts)] = os.path.join(folder, f)
    graph = {}
    for name, path in files.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        found = set()
        # Module level only, unless asked: not inside functions.
        nodes = ast.walk(tree) if inside_functions else tree.body
        for node in nodes:
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and (node.module.split(".")[0] == "keras_guided")
            ):
                base = node.module.split(".")[1:]
                for alias in node.names:
                    child = ".".join(base + [alias.name])
                    found.add(child if child in files else ".".join(base))
        graph[name] = found - {name, ""}
    return graph


def test_scoring_and_the_latency_greedy_import_no_cycle():
    # Planning uses latency's face (tables, timing); latency never imports
    # scoring, not even inside a function.
    graph = _module_level_imports(inside_functions=True)
    assert "latency" in graph["scoring._latency_greedy"]
    assert "latency" in graph["scoring._loop"]
    latency_imports = {
        child
        for name, children in graph.items()
        if name == "latency" or name.startswith("latency.")
        for child in children
    }
    assert not {
        child
        for child in latency_imports
        if child == "scoring" or child.startswith("scoring.")
    }

    def reaches(start, goal, seen):
        for child in graph.get(start, ()):
            if child == goal or (
                child not in seen and reaches(child, goal, seen | {child})
            ):
                return True
        return False

    planning = [name for name in graph if name.split(".")[0] == "scoring"]
    cycles = [name for name in planning if reaches(name, name, {name})]
    assert not cycles, f"import cycles through {cycles}"
    graph = _module_level_imports()
    cycles = [
        name
        for name in graph
        if name != "__init__" and reaches(name, name, {name})
    ]
    assert not cycles, f"module-level import cycles through {cycles}"
    assert scoring.KeptCost.__module__ == "keras_guided.scoring._cost"
