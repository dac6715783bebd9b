"""Property test: prune_model on random graphs with random dead units.

Hypothesis draws a functional model from the supported vocabulary (Dense,
Conv, Depthwise, Separable, BatchNormalization, activations, pooling,
Flatten, Add, Concatenate, nested blocks) and a random set of units to kill.
`prune_model` must then remove exactly those units, never leave a zero-width
layer, and compute the same function as the original. Two regimes:

* `"same"` padding: killing a unit zeroes every weight that shapes its
  output (kernel slice, bias, BN gamma and beta), so it emits 0 and removal
  is exact even at padded borders;
* `"valid"` padding: killing a unit zeroes its kernel slices only. Biases and
  BN parameters are random, so every killed unit emits a non-zero constant
  that surgery must fold into its consumers exactly.

CI runs 100 examples. For a longer hunt:

    KERAS_GUIDED_FUZZ_EXAMPLES=5000 \
        python -m pytest tests/surgery/test_fuzz_surgery.py
"""

import os

import keras
import numpy as np
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_guided

EXAMPLES = int(os.environ.get("KERAS_GUIDED_FUZZ_EXAMPLES", "100"))
BLOCKS = [
    "conv",
    "conv_bn",
    "depthwise",
    "separable",
    "residual",
    "concat",
    "pool",
    "nested",
    "dense_block",
]
# act(0) == 0 for these, so with 'same' padding a unit whose weights are all
# zero emits exactly 0 and padded borders stay exact.
ACTIVATIONS = ["relu", "linear", "tanh"]


INPUT_SHAPE = (9, 9, 3)


def build_model(spec):
    """Builds a functional model from a drawn spec."""
    seed, blocks, head, activation, padding = spec
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)

    def size(x, wanted):
        # A 3x3 'valid' kernel needs 3 positions; fall back to 1x1.
        return wanted if padding == "same" or x.shape[1] >= wanted else 1

    def conv(x, filters, kernel, **kwargs):
        return keras.layers.Conv2D(
            filters, size(x, kernel), padding=padding, **kwargs
        )(x)

    inputs = keras.Input(INPUT_SHAPE)
    x = conv(inputs, 4, 3, activation=activation)
    for block in blocks:
        channels = x.shape[-1]
        if block == "conv":
            x = conv(
                x,
                int(rng.integers(2, 6)),
                int(rng.choice([1, 3])),
                activation=activation,
            )
        elif block == "conv_bn":
            x = conv(x, int(rng.integers(2, 6)), 3)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation(activation)(x)
        elif block == "depthwise":
            x = keras.layers.DepthwiseConv2D(
                size(x, 3),
                padding=padding,
                depth_multiplier=int(rng.integers(1, 3)),
                activation=activation,
            )(x)
        elif block == "separable":
            x = keras.layers.SeparableConv2D(
                int(rng.integers(2, 6)), size(x, 3), padding=padding
            )(x)
        elif block == "residual":
            y = conv(x, channels, 1, activation=activation)
            x = keras.layers.Add()([x, y])
        elif block == "concat":
            a = conv(x, int(rng.integers(1, 4)), 1, activation=activation)
            b = conv(x, int(rng.integers(1, 4)), 1, activation=activation)
            x = keras.layers.Concatenate()([a, b, x])
        elif block == "pool" and x.shape[1] >= 4:
            x = keras.layers.MaxPooling2D(2)(x)
        elif block == "nested":
            inner_in = keras.Input(tuple(x.shape[1:]))
            inner = keras.layers.Conv2D(int(rng.integers(2, 5)), 1)(inner_in)
            inner = keras.layers.BatchNormalization()(inner)
            x = keras.Model(inner_in, inner)(x)
        elif block == "dense_block":
            x = keras.layers.Dense(
                int(rng.integers(2, 6)), activation=activation
            )(x)
    if head == "flatten":
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(5, activation=activation)(x)
    else:
        x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3)(x)
    model = keras.Model(inputs, outputs)
    _randomize_parameters(model, rng)
    return model


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def _randomize_parameters(model, rng):
    """Random biases and BN parameters/statistics: constants to fold."""
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(size=n),
                    rng.normal(size=n),
                    rng.uniform(0.5, 2.0, n),
                ]
            )
        elif getattr(layer, "use_bias", False):
            layer.bias.assign(rng.normal(size=layer.bias.shape))


def zero_units(group, units, kernels_only=False):
    """Zeroes the output-shaping slices of `units` of `group` (in place).

    With `kernels_only`, only the producers' kernel slices: the unit then
    emits a constant (its bias, BN shift) instead of zero.
    """
    for item in group.slices:
        if item.role not in ("producer", "follower"):
            continue
        if kernels_only and (item.role != "producer" or item.weight == "bias"):
            continue
        variable = keras_guided.units.get_weight(item.layer, item.weight)
        value = keras.ops.convert_to_numpy(variable.value).copy()
        axes = item.axis if isinstance(item.axis, tuple) else (item.axis,)
        axes = sorted(a % value.ndim for a in axes)
        rest = [a for a in range(value.ndim) if a not in axes]
        moved = np.transpose(value, axes + rest)
        flat = moved.reshape(-1, *moved.shape[len(axes) :])
        flat[item.positions[units].reshape(-1)] = 0.0
        restored = flat.reshape(moved.shape)
        variable.assign(np.transpose(restored, np.argsort(axes + rest)))


@st.composite
def specs(draw):
    seed = draw(st.integers(0, 2**16))
    blocks = draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4))
    head = draw(st.sampled_from(["flatten", "global_pool"]))
    activation = draw(st.sampled_from(ACTIVATIONS))
    padding = draw(st.sampled_from(["same", "valid"]))
    return seed, blocks, head, activation, padding


def _widths(model):
    widths = {}
    for layer in _all_layers(model):
        if keras_guided.units.layer_family(layer) is not None:
            widths[layer.name] = keras_guided.units.num_units(layer)
    return widths


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=specs(), data=st.data())
def test_prune_random_graph_matches_original(spec, data):
    model = build_model(spec)
    groups = [g for g in keras_guided.find_unit_groups(model) if g.prunable]
    if not groups:
        return
    killed = {}
    for group in groups:
        units = data.draw(
            st.lists(
                st.integers(0, group.num_units - 1),
                unique=True,
                max_size=group.num_units,
            ),
            label=f"dead units of {group.index}",
        )
        if units:
            zero_units(
                group, np.asarray(units), kernels_only=spec[-1] == "valid"
            )
            killed[group.index] = len(units)
    x = (
        np.random.default_rng(spec[0])
        .normal(size=(4, *INPUT_SHAPE))
        .astype("float32")
    )
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    pruned, report = keras_guided.prune_model(
        model, verify=False, return_report=True
    )
    got = keras.ops.convert_to_numpy(pruned(x, training=False))
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(got, expected, atol=1e-5 * scale)
    assert all(width >= 1 for width in _widths(pruned).values())
    # Exactly the killed units go, but never the last unit of a group.
    by_index = {g.index: g for g in groups}
    expected_removed = {
        index: (
            by_index[index].num_units,
            max(by_index[index].num_units - count, 1),
        )
        for index, count in killed.items()
        if by_index[index].num_units > 1
    }
    assert report.removed == expected_removed


def test_zero_units_kills_a_dense_unit():
    # The helper itself must do what it says, or the property test is empty.
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    group = next(
        g for g in keras_guided.find_unit_groups(model) if "hidden" in g.layers
    )
    zero_units(group, np.array([1]))
    kernel, bias = model.get_layer("hidden").get_weights()
    assert np.all(kernel[:, 1] == 0) and bias[1] == 0
    assert np.all(kernel[:, [0, 2]] != 0)
    pruned = keras_guided.prune_model(model, verify=False)
    assert pruned.get_layer("hidden").units == 2
