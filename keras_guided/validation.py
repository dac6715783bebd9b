"""Checks shared by every entry point that takes a user's model."""

import keras

from keras_guided import _keras_adapter as adapter

# Module prefixes of the legacy Keras 2 implementations.
_LEGACY_KERAS = (
    "tf_keras",
    "tensorflow.python.keras",
    "keras.engine",
    "keras.src.engine",
    "tensorflow.keras",
)


def is_legacy_keras(obj):
    """Whether `obj` is an object of tf_keras / Keras 2 (not Keras 3)."""
    return any(
        cls.__module__.startswith(_LEGACY_KERAS) for cls in type(obj).__mro__
    )


def check_model(model, argument="model"):
    """Raises a clear `ValueError` unless `model` is a Keras 3 `keras.Model`.

    A tf_keras (Keras 2) model gets its own message that points to the
    Keras 3 path, since that is the common mistake of users coming from
    tensorflow-model-optimization.

    Examples:
        >>> import keras, keras_guided
        >>> keras_guided.validation.check_model("model.keras")
        Traceback (most recent call last):
        ...
        ValueError: `model` must be a Keras 3 keras.Model (Sequential or
        Functional). Received: str. Load a saved model first with
        keras.saving.load_model(path).
    """
    if isinstance(model, keras.Model):
        return model
    if is_legacy_keras(model):
        raise ValueError(
            f"`{argument}` is a tf_keras (Keras 2) model "
            f"({type(model).__module__}.{type(model).__name__}). "
            "keras_guided works on Keras 3 models (`import keras`, not "
            "`tf.keras` with TF_USE_LEGACY_KERAS=1, and not `tf_keras`). "
            "Rebuild the architecture with Keras 3 and copy the weights "
            "(`new.set_weights(old.get_weights())`), or save it as `.keras` "
            "from Keras 3; see docs/howto/from-tfmot.md."
        )
    hint = ""
    if isinstance(model, str):
        hint = " Load a saved model first with keras.saving.load_model(path)."
    raise ValueError(
        f"`{argument}` must be a Keras 3 keras.Model (Sequential or "
        f"Functional). Received: {type(model).__name__}.{hint}"
    )


def quantized_layer(model):
    """The first layer of `model` (nested layers included) that Keras
    quantized (`model.quantize(mode)`), with its mode, or `(None, None)`."""
    for layer in adapter.layer_tree(model)[1:]:
        mode = getattr(layer, "quantization_mode", None)
        if mode is not None:
            return layer, mode
    return None, None


def check_not_quantized(model, action):
    """Raises a clear `ValueError` when a layer of `model` is quantized.

    A quantized layer keeps its kernel as integers (or float8) with
    per-unit scales, which neither the penalties nor the rewrite slice;
    quantizing is the last step, after pruning. `action` says what was
    refused (`"prune_model cannot prune"`).

    """
    if not isinstance(model, keras.Model):
        return
    layer, mode = quantized_layer(model)
    if layer is None:
        return
    raise ValueError(
        f"{action} model '{model.name}': layer '{layer.name}' "
        f"({type(layer).__name__}) is quantized (quantization mode "
        f"'{mode}', from `model.quantize('{mode}')`). Pruning works on the "
        "float model: prune first, quantize after. Train and prune the "
        "model before `quantize()` (`keras_guided.prune_model`), then "
        f"call `pruned.quantize('{mode}')` on the result, or export it "
        "with `keras_guided.export_tflite(pruned, path, "
        "quantization='int8')`."
    )
