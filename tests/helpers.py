"""Small backend-agnostic helpers shared by the tests: gradients, model
builders and weight edits that several test files use."""

import math

import keras
import numpy as np
import pytest

import keras_guided


def gradient(fn, array):
    """Gradient of the scalar `fn(x)` with respect to `x`, as numpy."""
    array = np.asarray(array, "float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(array)
        with tf.GradientTape() as tape:
            value = fn(x)
        return tape.gradient(value, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda x: fn(x))(array))
    if backend == "torch":
        import torch

        x = torch.tensor(array, requires_grad=True)
        fn(x).backward()
        return x.grad.numpy()
    raise NotImplementedError(f"No gradient helper for backend {backend!r}")


# ------------------------------------------------------------ weights
def leaves(model):
    """Every layer of `model` that is not itself a model, depth first."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaves(layer)
        else:
            yield layer


def find(model, name):
    """The leaf layer of `model` called `name`."""
    for layer in leaves(model):
        if layer.name == name:
            return layer
    raise AssertionError(name)


def randomize(model, seed=0):
    """Random biases and BatchNormalization statistics (constants to fold)."""
    rng = np.random.default_rng(seed)
    for layer in leaves(model):
        values = []
        for variable in layer.weights:
            value = keras.ops.convert_to_numpy(variable.value)
            if variable.name in ("bias", "beta", "moving_mean"):
                value = rng.normal(size=value.shape).astype(value.dtype)
            elif variable.name in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 1.5, value.shape).astype(value.dtype)
            values.append(value)
        layer.set_weights(values)
    return model


def zero_units(
    group, unit_indices, roles=("producer", "follower"), inputs_only=False
):
    """Sets the chosen units of `group` to zero in their layers.

    `inputs_only=True` zeros only the producers' kernels (incoming weights),
    so the units still emit a constant (bias, BN shift) to be folded.
    """
    unit_indices = np.asarray(unit_indices)
    for slice_ in group.slices:
        if slice_.role not in roles:
            continue
        variable = keras_guided.units.get_weight(slice_.layer, slice_.weight)
        value = keras.ops.convert_to_numpy(variable.value).copy()
        if inputs_only and (slice_.role != "producer" or value.ndim < 2):
            continue
        axes = slice_.axis if isinstance(slice_.axis, tuple) else (slice_.axis,)
        axes = sorted(a % value.ndim for a in axes)
        rest = [a for a in range(value.ndim) if a not in axes]
        moved = np.transpose(value, axes + rest)
        flat = moved.reshape(-1, *moved.shape[len(axes) :])
        flat[slice_.positions[unit_indices].ravel()] = 0
        restored = flat.reshape(moved.shape)
        variable.assign(np.transpose(restored, np.argsort(axes + rest)))


# ------------------------------------------------------------- models
def tiny_llama(
    intermediate_dim=32, *, seed=0, vocabulary_size=100, num_layers=2
):
    """A keras-hub `LlamaCausalLM` with 16-wide blocks, 4 query and 2
    key-value heads, built after seeding with `seed`; skips the test when
    keras-hub is not installed."""
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=intermediate_dim,
    )
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def latency_cnn(filters=16, pointwise=24, name="cnn"):
    """Conv2D, DepthwiseConv2D, pointwise Conv2D and Dense on 8x8x3 inputs."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(
        filters, 3, padding="same", activation="relu", name="c1"
    )(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(pointwise, 1, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, name="out")(x)
    return keras.Model(inputs, outputs, name=name)


# ------------------------------------------------------------ latency
FAKE_OVERHEAD_MS = 5e-3


def fake_layer_ms(layer_class, kwargs, input_shape, settings):
    """Bilinear in (input, output) channels, so interpolation is exact
    (the interpreter's fixed cost, added by the latency tests' `timer`
    fixture, is not included)."""
    cin = input_shape[-1]
    area = math.prod(input_shape[:-1]) or 1
    kernel = kwargs.get("kernel_size", 1)
    kernel = math.prod(kernel) if isinstance(kernel, (list, tuple)) else kernel
    if layer_class is keras.layers.DepthwiseConv2D:
        return 1e-3 + 1e-6 * area * kernel * cin
    cout = kwargs.get("filters", kwargs.get("units"))
    return 2e-3 + 1e-6 * area * (cin + cout + kernel * cin * cout)


def build_table(model, tmp_path, **settings):
    """`build_latency_table` cached under `tmp_path`, silently."""
    return keras_guided.build_latency_table(
        model, cache_dir=str(tmp_path), verbose=0, **settings
    )
