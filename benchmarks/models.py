"""Model builders for B1, parameterized by layer widths.

Both families are plain chains (Sequential), which lets the benchmark
compute masks, kept widths and a reference rebuild for cross-checking
`keras_guided.prune_model` without any graph analysis.
"""

import keras
import numpy as np

_keras3 = keras

MODELS = ("lenet300", "lenet5", "lenet5_bn")
DEFAULT_WIDTHS = {
    "lenet300": (300, 100),
    "lenet5": (20, 50, 500),
    "lenet5_bn": (20, 50, 500),
}


def _conv_geometry(input_shape):
    # LeNet-5 (Caffe style) uses 5x5 'valid' convolutions on 28x28 inputs;
    # 8x8 digits are too small for that, so they get 3x3 'same' ones.
    return (5, "valid") if input_shape[0] >= 28 else (3, "same")


def build(
    name,
    input_shape,
    widths=None,
    num_classes=10,
    regularizer=None,
    keras_module=None,
    regularize_output=False,
):
    """Builds a benchmark model.

    Args:
        name: one of `MODELS`.
        input_shape: `(height, width, 1)`.
        widths: hidden widths; defaults to `DEFAULT_WIDTHS[name]`.
        num_classes: output units. Defaults to 10.
        regularizer: `None` or a zero-argument callable returning a fresh
            regularizer; it is put on every hidden kernel (and on BN gamma
            and beta, which otherwise undo a kernel-only penalty by
            rescaling).
        regularize_output: also put `regularizer` on the output kernel.
            Defaults to `False`.
        keras_module: the Keras API to build with. Defaults to `None`
            (Keras 3); the tfmot baseline passes `tf_keras`.

    Returns:
        An uncompiled `keras.Sequential` that outputs logits.
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}. Received: {name!r}")
    widths = tuple(int(w) for w in (widths or DEFAULT_WIDTHS[name]))
    reg = regularizer or (lambda: None)
    keras = keras_module or _keras3
    layers = [keras.Input(tuple(input_shape))]
    if name == "lenet300":
        layers.append(keras.layers.Flatten(name="flatten"))
        for i, width in enumerate(widths, 1):
            layers.append(
                keras.layers.Dense(
                    width,
                    activation="relu",
                    kernel_regularizer=reg(),
                    name=f"dense_{i}",
                )
            )
    else:
        batchnorm = name == "lenet5_bn"
        kernel_size, padding = _conv_geometry(input_shape)
        for i, filters in enumerate(widths[:2], 1):
            layers.append(
                keras.layers.Conv2D(
                    filters,
                    kernel_size,
                    padding=padding,
                    activation=None if batchnorm else "relu",
                    kernel_regularizer=reg(),
                    name=f"conv_{i}",
                )
            )
            if batchnorm:
                layers.append(
                    keras.layers.BatchNormalization(
                        gamma_regularizer=reg(),
                        beta_regularizer=reg(),
                        name=f"bn_{i}",
                    )
                )
                layers.append(keras.layers.ReLU(name=f"relu_{i}"))
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool_{i}"))
        layers.append(keras.layers.Flatten(name="flatten"))
        layers.append(
            keras.layers.Dense(
                widths[2],
                activation="relu",
                kernel_regularizer=reg(),
                name="dense_1",
            )
        )
    layers.append(
        keras.layers.Dense(
            num_classes,
            name="output",
            kernel_regularizer=reg() if regularize_output else None,
        )
    )
    return keras.Sequential(layers, name=name)


def prunable_layers(model):
    """`[(producer, batchnorm_or_None)]` for every hidden Dense/Conv layer."""
    layers = model.layers
    out = []
    for i, layer in enumerate(layers):
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and (
            layer.name != "output"
        ):
            follower = None
            if i + 1 < len(layers) and isinstance(
                layers[i + 1], keras.layers.BatchNormalization
            ):
                follower = layers[i + 1]
            out.append((layer, follower))
    return out


def unit_norms(model):
    """Per-unit L2 norm of everything a hidden unit owns, per layer name.

    Kernel slice, bias and (if present) BN gamma and beta.
    """
    norms = {}
    for layer, bn in prunable_layers(model):
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        squared = np.sum(kernel.reshape(-1, kernel.shape[-1]) ** 2, axis=0)
        if layer.use_bias:
            squared = squared + keras.ops.convert_to_numpy(layer.bias) ** 2
        if bn is not None:
            squared = squared + keras.ops.convert_to_numpy(bn.gamma) ** 2
            squared = squared + keras.ops.convert_to_numpy(bn.beta) ** 2
        norms[layer.name] = np.sqrt(squared)
    return norms


def keep_by_threshold(norms, threshold):
    """Keeps units with `norm > threshold * max(norm)` (at least one)."""
    keep = {}
    for name, values in norms.items():
        mask = values > threshold * max(float(values.max()), 1e-30)
        if not mask.any():
            mask[int(np.argmax(values))] = True
        keep[name] = np.flatnonzero(mask)
    return keep


def keep_by_fraction(norms, fraction):
    """Keeps the `ceil(fraction * n)` largest-norm units of each layer."""
    keep = {}
    for name, values in norms.items():
        count = max(1, int(np.ceil(fraction * len(values))))
        keep[name] = np.sort(np.argsort(-values, kind="stable")[:count])
    return keep


def masked_copy(model, keep):
    """A copy of `model` whose units outside `keep` output exactly zero.

    Zeroes each removed unit's kernel slice, bias and BN gamma/beta, so the
    unit's post-activation output is 0 and removing it changes nothing.
    """
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer, bn in prunable_layers(clone):
        drop = np.setdiff1d(np.arange(layer.kernel.shape[-1]), keep[layer.name])
        kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
        kernel[..., drop] = 0.0
        layer.kernel.assign(kernel)
        if layer.use_bias:
            bias = keras.ops.convert_to_numpy(layer.bias).copy()
            bias[drop] = 0.0
            layer.bias.assign(bias)
        if bn is not None:
            for weight in (bn.gamma, bn.beta):
                value = keras.ops.convert_to_numpy(weight).copy()
                value[drop] = 0.0
                weight.assign(value)
    return clone


def kept_widths(model, keep):
    return tuple(len(keep[layer.name]) for layer, _ in prunable_layers(model))


def reference_rebuild(model, keep, name, input_shape, num_classes=10):
    """A plain (unregularized) model at the kept widths, weights copied.

    A benchmark-local cross-check for `keras_guided.prune_model` on chains:
    exact when the removed units output zero (see `masked_copy`).
    """
    small = build(name, input_shape, kept_widths(model, keep), num_classes)
    previous = None  # kept channels feeding the current layer
    for old, new in zip(model.layers, small.layers):
        weights = [keras.ops.convert_to_numpy(w) for w in old.weights]
        if isinstance(old, (keras.layers.Dense, keras.layers.Conv2D)):
            kernel = weights[0]
            if previous is not None:
                if (
                    isinstance(old, keras.layers.Dense)
                    and kernel.shape[0] != (previous[1])
                ):
                    # After Flatten (channels last): channel c owns rows
                    # c, c + C, c + 2C, ...
                    channels = previous[1]
                    kernel = kernel.reshape(-1, channels, kernel.shape[-1])
                    kernel = kernel[:, previous[0], :]
                    kernel = kernel.reshape(-1, kernel.shape[-1])
                else:
                    kernel = np.take(kernel, previous[0], axis=-2)
            out_keep = keep.get(old.name)
            if out_keep is not None:
                kernel = kernel[..., out_keep]
                weights = [kernel] + [w[out_keep] for w in weights[1:]]
                previous = (out_keep, old.kernel.shape[-1])
            else:
                weights = [kernel] + weights[1:]
        elif isinstance(old, keras.layers.BatchNormalization):
            weights = [w[previous[0]] for w in weights]
        new.set_weights(weights)
    return small


def recalibrate_batchnorm(model, x):
    """Sets BatchNormalization moving statistics to those of `x`.

    One training-mode pass with momentum 0: the moving mean and variance of
    every BN layer become the statistics of `x` at that layer. After a few
    epochs (and more so under a penalty that shrinks channels) the moving
    averages lag the weights; every method gets this same step, before any
    accuracy is measured. A no-op for models without BN.
    """
    batchnorms = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not batchnorms:
        return
    momenta = [layer.momentum for layer in batchnorms]
    try:
        for layer in batchnorms:
            layer.momentum = 0.0
        model(x, training=True)
    finally:
        for layer, momentum in zip(batchnorms, momenta):
            layer.momentum = momentum
