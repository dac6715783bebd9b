"""CIFAR ResNets (He et al., 2016, section 4.2) for B4, in Keras.

ResNet-20 (n=3) or ResNet-56 (n=9): a 3x3 stem conv with 16 filters,
three stages of `n` basic blocks with 16, 32 and 64 filters (stride 2 at
the first block of stages 2 and 3), global average pooling and a Dense
classifier. Every conv has no bias and is followed by BatchNormalization
(epsilon 1e-5, momentum 0.9: PyTorch's defaults, so the weights port
exactly). Shortcuts are the identity, or a 1x1 conv with BN where a block
changes the stride or the width (option B), a form that both
keras_guided and Torch-Pruning prune: the residual adds tie the channels
of a stage into one group.

A stride-2 3x3 conv is an explicit `ZeroPadding2D(1)` and a 'valid' conv,
since Keras' 'same' pads such a conv on the bottom/right only and
PyTorch's `padding=1` on both sides.

Layer names are fixed (`stem_conv`, `s2b1_conv1`, `s2b1_proj`, `fc`, ...)
and shared with the PyTorch twin in `benchmarks/b4_torch.py`; a pruned
model is described by `conv_widths(model)`, `{conv name: filters}`.
"""

import keras

ARCHS = {"resnet20": 3, "resnet56": 9}
STAGE_WIDTHS = (16, 32, 64)
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def block_names(arch):
    """`[(prefix, stride, has_projection)]` of every basic block."""
    if arch not in ARCHS:
        raise ValueError(
            f"arch must be one of {sorted(ARCHS)}. Received: {arch!r}"
        )
    out = []
    for stage in range(3):
        for block in range(ARCHS[arch]):
            first = block == 0 and stage > 0
            out.append((f"s{stage + 1}b{block + 1}", 2 if first else 1, first))
    return out


def default_widths(arch):
    """`{conv name: filters}` of the unpruned network."""
    widths = {"stem_conv": STAGE_WIDTHS[0]}
    for prefix, _, projection in block_names(arch):
        width = STAGE_WIDTHS[int(prefix[1]) - 1]
        widths[f"{prefix}_conv1"] = width
        widths[f"{prefix}_conv2"] = width
        if projection:
            widths[f"{prefix}_proj"] = width
    return widths


def _conv_bn(x, filters, kernel, stride, name):
    if kernel == 3 and stride == 2:
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if kernel == 3 else "valid"
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )(x)
    bn_name = name.replace("conv", "bn") if "conv" in name else f"{name}_bn"
    return keras.layers.BatchNormalization(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=bn_name
    )(x)


def build(arch="resnet20", widths=None, num_classes=10):
    """The Keras ResNet at `widths` (`{conv name: filters}`, default: the
    unpruned 16-32-64 network); outputs logits."""
    names = block_names(arch)
    widths = dict(default_widths(arch), **(widths or {}))
    inputs = keras.Input((32, 32, 3), name="image")
    x = _conv_bn(inputs, widths["stem_conv"], 3, 1, "stem_conv")
    x = keras.layers.ReLU(name="stem_relu")(x)
    for prefix, stride, projection in names:
        y = _conv_bn(x, widths[f"{prefix}_conv1"], 3, stride, f"{prefix}_conv1")
        y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
        y = _conv_bn(y, widths[f"{prefix}_conv2"], 3, 1, f"{prefix}_conv2")
        shortcut = x
        if projection:
            shortcut = _conv_bn(
                x, widths[f"{prefix}_proj"], 1, stride, f"{prefix}_proj"
            )
        x = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
        x = keras.layers.ReLU(name=f"{prefix}_relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name=arch)


def conv_widths(model):
    """`{conv name: filters}` of a (pruned) ResNet."""
    return {
        layer.name: int(layer.filters)
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
    }


def batchnorm_of(conv_name):
    """The name of the BatchNormalization after conv `conv_name`."""
    if "conv" in conv_name:
        return conv_name.replace("conv", "bn")
    return f"{conv_name}_bn"


def export_weights(model):
    """`{name: array}` of every weight, in the layout of the PyTorch twin
    (OIHW conv kernels, `[out, in]` Dense kernel, BN weight/bias/running
    statistics), keyed `<layer>.<torch parameter>`."""
    import numpy as np

    out = {}
    for layer in model.layers:
        values = [keras.ops.convert_to_numpy(w) for w in layer.weights]
        if isinstance(layer, keras.layers.Conv2D):
            out[f"{layer.name}.weight"] = np.transpose(values[0], (3, 2, 0, 1))
        elif isinstance(layer, keras.layers.BatchNormalization):
            for key, value in zip(
                ("weight", "bias", "running_mean", "running_var"), values
            ):
                out[f"{layer.name}.{key}"] = value
        elif isinstance(layer, keras.layers.Dense):
            out[f"{layer.name}.weight"] = values[0].T
            out[f"{layer.name}.bias"] = values[1]
    return {k: np.ascontiguousarray(v, dtype="float32") for k, v in out.items()}


def import_weights(model, arrays):
    """Sets `model`'s weights from `export_weights`' layout (the inverse)."""
    import numpy as np

    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights(
                [np.transpose(arrays[f"{layer.name}.weight"], (2, 3, 1, 0))]
            )
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [
                    arrays[f"{layer.name}.{key}"]
                    for key in ("weight", "bias", "running_mean", "running_var")
                ]
            )
        elif isinstance(layer, keras.layers.Dense):
            layer.set_weights(
                [arrays[f"{layer.name}.weight"].T, arrays[f"{layer.name}.bias"]]
            )
    return model
