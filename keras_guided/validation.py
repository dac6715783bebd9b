"""Checks shared by every entry point that takes a user's model."""

import keras

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
