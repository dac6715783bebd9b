"""Whether a pruned model reloads with `keras.saving.load_model`.

A layer kept whole (a keras-hub layer the graph walk could not open, a
user's composite layer) is carried into the pruned Functional model as it
is. Saving writes its config and build config; loading re-creates it from
them and then loads its variables. Some layers do not survive that: a
config their class does not take back (keras-hub's
`ViTPatchingAndEmbedding`), sublayers built lazily in `call` that
`build_from_config` does not build (DeBERTa-v3's relative embedding:
"Layer 'rel_embeddings_layer_norm' was never built"). The file is then
written but does not load, which a user finds out only later.

`check` rebuilds the pruned model's architecture from its config the way
`load_model` does (every layer from its config, built from its build
config, called on the inputs), without writing or reading any weight, and
compares the variables each layer ends up with. It runs only when the
pruned model holds a layer that is not Keras' own; Keras' layers round-trip
by construction.
"""

import warnings

import keras

from keras_guided import _keras_adapter as adapter


def _is_keras(layer):
    module = type(layer).__module__
    return module == "keras" or module.startswith("keras.")


def _shapes(layer):
    return [tuple(v.shape) for v in layer.weights]


def check(pruned):
    """`None` when `pruned` reloads, else why not (a sentence naming the
    layer)."""
    if all(_is_keras(layer) for layer in adapter.layer_tree(pruned)):
        return None
    try:
        with warnings.catch_warnings():
            # Keras' own warnings about the layers being checked.
            warnings.simplefilter("ignore")
            config = keras.saving.serialize_keras_object(pruned)
            rebuilt = keras.saving.deserialize_keras_object(
                config, safe_mode=False
            )
    except Exception as error:  # noqa: BLE001 (reported, not raised)
        return f"re-creating it from its config fails ({_reason(error)})"
    # Paired in order, as Keras' loading walks them (names can repeat
    # across nested models).
    old_layers = adapter.layer_tree(pruned)
    new_layers = adapter.layer_tree(rebuilt)
    for index, layer in enumerate(old_layers[1:], start=1):
        new = new_layers[index] if index < len(new_layers) else None
        if new is None or type(new) is not type(layer):
            return (
                f"layer '{layer.name}' ({type(layer).__name__}) is not "
                "re-created from the saved config"
            )
        if _shapes(new) == _shapes(layer):
            continue
        unbuilt = [
            inner.name for inner in adapter.layer_tree(new) if not inner.built
        ]
        if unbuilt:
            detail = f"its sublayer '{unbuilt[0]}' is never built"
        else:
            detail = (
                f"it gets the variables {_shapes(new)} instead of "
                f"{_shapes(layer)}"
            )
        return (
            f"layer '{layer.name}' ({type(layer).__name__}), re-created "
            f"from its config and build config, does not match: {detail}"
        )
    return None


def _reason(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"


def note(model, reason):
    """The note (and warning) for a pruned model that will not reload."""
    return (
        f"the pruned model of '{model.name}' saves but will not load with "
        f"keras.saving.load_model: {reason}. To keep it loadable, prune "
        "with uniform_blocks=True so a keras-hub model comes back as its "
        "own class (which loads), or save the weights "
        "(`pruned.save_weights(path)`) and rebuild the pruned model by "
        "pruning the original again with the same plan."
    )
