"""Copies of layers that keep everything that defines them.

`prune_model` rebuilds the whole graph, so every layer of the pruned model
is a new object, and none shares a variable with the user's model. A layer
that no removed unit passes through must come out *equal* to the original:
its weights, and also the state that is not a weight (an adapted
`Normalization`'s mean and variance, a lookup layer's vocabulary, ...).
`set_weights` carries only the weights, and some state is recomputed only
by `finalize_state`, which Keras calls when it loads a layer, so a copy is
made the way Keras loads a saved model:

1. `type(layer).from_config(layer.get_config())`, called on the new
   tensors (which builds it), then every layer of its tree gets the state
   of the matching original layer through Keras' own
   `save_own_variables` / `load_own_variables` (which calls
   `finalize_state`) and `save_assets` / `load_assets` (vocabulary files,
   in a temporary folder);
2. where the config does not round-trip (an `__init__` that takes no
   `name`, a config with entries the class does not take back) or the
   rebuilt layer does not take the original's state: the class called
   again with the arguments Keras recorded when the layer was created
   (`_keras_adapter.replay_constructor`), then the same state copy;
3. when both fail, an error that names the layer, gives both reasons and
   says what works.

(`copy.deepcopy` is no way out: Keras deep-copies a layer through its
config too.)

A layer rebuilt with fewer units (by its rule) gets its sliced weights
with `set_weights`; its state beyond weights is then recomputed the same
way (`reload_state`).

The user's own objects that a layer holds (regularizers, constraints,
initializers, activations not from Keras) are reused, never re-created
from their config: a closure or a class without `get_config` neither
serializes nor deserializes, and the object itself is what the user
wrote (`layer_config`).
"""

import inspect
import tempfile

import keras
import numpy as np
from keras import ops

from keras_guided import _keras_adapter as adapter


class _ValueStore(dict):
    """The dict a layer saves its variables into, holding copies."""

    def __setitem__(self, key, value):
        if isinstance(value, keras.Variable):
            value = value.value
        try:
            value = np.array(ops.convert_to_numpy(value))
        except Exception:  # noqa: BLE001, S110 (not a tensor: kept as is)
            value = value
        super().__setitem__(key, value)


def _describe(layer):
    return f"layer '{layer.name}' ({type(layer).__name__})"


def copy_state(source, target):
    """Gives every layer of `target`'s tree the state of `source`'s.

    Raises:
        ValueError: when the two trees do not match (other sublayers).
    """
    sources, targets = adapter.layer_tree(source), adapter.layer_tree(target)
    shape = [type(layer).__name__ for layer in sources]
    other = [type(layer).__name__ for layer in targets]
    if shape != other:
        raise ValueError(
            f"rebuilt from its config it has the sublayers {other}, the "
            f"original {shape}"
        )
    for old, new in zip(sources, targets):
        store = _ValueStore()
        old.save_own_variables(store)
        new.load_own_variables(store)
        if _has_lora(old):
            # Keras saves a LoRA layer with the adapter merged into the
            # kernel, and loads it with the adapter zeroed: the copy keeps
            # the adapter, to train on.
            for mine, theirs in zip(new.weights, old.weights):
                mine.assign(theirs.value)
            keep_lora(old, new)
        if hasattr(old, "save_assets") and hasattr(new, "load_assets"):
            # Vocabulary files (lookup layers), through a folder.
            with tempfile.TemporaryDirectory() as folder:
                old.save_assets(folder)
                new.load_assets(folder)


def _overrides_loading(layer):
    return (
        type(layer).load_own_variables
        is not keras.layers.Layer.load_own_variables
    )


def _has_lora(layer):
    return bool(getattr(layer, "lora_enabled", False))


def keep_lora(source, target):
    """Gives `target` (rebuilt from `source`'s config) `source`'s LoRA
    scale: Keras 3.15's `from_config` enables LoRA with
    `lora_alpha = lora_rank`, whatever the config says."""
    if _has_lora(source) and _has_lora(target):
        target.lora_alpha = source.lora_alpha


def reload_state(layer):
    """Recomputes what a layer derives from its variables (Keras'
    `load_own_variables`, e.g. `Normalization.finalize_state`) after they
    were set with `set_weights`. A LoRA layer derives nothing (and Keras'
    loading would merge its adapter into the kernel)."""
    for inner in adapter.layer_tree(layer):
        if _overrides_loading(inner) and not _has_lora(inner):
            store = _ValueStore()
            inner.save_own_variables(store)
            inner.load_own_variables(store)


def new_copy(layer, standard_config):
    """A new, unbuilt layer that equals `layer` once built and given its
    state with `copy_state`; `standard_config` edits the config (drops
    what is not Keras'). Returns `(layer, how)`, `how` in `"config"`,
    `"constructor"`."""
    try:
        config = standard_config(layer_config(layer))
        return type(layer).from_config(config), "config"
    except Exception as error:  # noqa: BLE001 (the other way, or advice)
        return replayed(layer, error), "constructor"


_OBJECT_TYPES = (
    keras.regularizers.Regularizer,
    keras.constraints.Constraint,
    keras.initializers.Initializer,
)
# What a layer's config says for an object while it is read without it.
_STAND_INS = {"activation": keras.activations.linear}


def _is_keras(value):
    module = getattr(value, "__module__", None) or type(value).__module__
    return module == "keras" or module.startswith("keras.")


def user_objects(layer):
    """`{attribute: object}` of the regularizers, constraints,
    initializers and activation functions `layer` holds that are not
    Keras' own (the user's, or keras_guided's)."""
    found = {}
    for name, value in vars(layer).items():
        if name.startswith("_") or value is None or _is_keras(value):
            continue
        activation = name == "activation" or name.endswith("_activation")
        function = inspect.isfunction(value) or inspect.ismethod(value)
        if isinstance(value, _OBJECT_TYPES) or (activation and function):
            found[name] = value
    return found


def layer_config(layer):
    """`layer.get_config()` with the user's own objects (`user_objects`)
    in it as they are, so `from_config` reuses them: read from a view of
    the layer without them (`_keras_adapter.config_with`), so an object
    that does not serialize (a regularizer without `get_config`, a
    closure) does not stop it."""
    objects = user_objects(layer)
    if not objects:
        return layer.get_config()
    config = adapter.config_with(
        layer, {name: _STAND_INS.get(name) for name in objects}
    )
    for name, value in objects.items():
        if name in config or name == "activity_regularizer":
            config[name] = value
    return config


def config_view(layer):
    """`layer`, or where it holds user objects (`user_objects`) a view of
    it whose `get_config()` is `layer_config(layer)`: what a rule (ours or
    a user's, which calls `layer.get_config()`) is given."""
    if not user_objects(layer):
        return layer
    return adapter.layer_view(
        layer, {"get_config": lambda: layer_config(layer)}
    )


def replayed(layer, config_error):
    """`layer`'s class called again with its recorded arguments, or an
    error naming the layer and what works.

    Raises:
        ValueError: when that fails too.
    """
    try:
        return adapter.replay_constructor(layer)
    except Exception as error:  # noqa: BLE001 (re-raised with advice)
        raise cannot_copy(layer, config_error, error) from error


def cannot_copy(layer, config_error, error):
    """The error for a layer that neither way copies."""
    name = type(layer).__name__
    return ValueError(
        f"Cannot copy {_describe(layer)} into the pruned model: "
        f"rebuilding it from its config failed ({_reason(config_error)}), "
        f"and so did creating it again with the arguments it was created "
        f"with ({_reason(error)}). No removed unit passes through it, so "
        f"it only has to be copied: give {name} a `get_config()` that "
        f"`{name}.from_config` accepts (its `__init__` taking every entry, "
        "and `**kwargs` passed on to `super().__init__`)."
    )


def _reason(error):
    return f"{type(error).__name__}: {error}"


def from_config_error(layer, error):
    """The error for a layer rebuilt with fewer units whose config is not
    accepted back by its class."""
    name = type(layer).__name__
    return ValueError(
        f"Cannot rebuild {_describe(layer)} with its kept units: "
        f"`{name}.from_config` failed on the config of its rule "
        f"({type(error).__name__}: {error}). Make {name}'s `get_config()` "
        "round-trip (its `__init__` taking every entry, and `**kwargs` "
        "passed on to `super().__init__`), register a rule that returns a "
        "config it accepts (`keras_guided.register_rule`), or keep its "
        f"units with `protected=['{layer.name}']`."
    )


_LOW_PRECISION = ("float16", "bfloat16")


def low_precision_policy(model):
    """The name of the first mixed or low-precision dtype policy (compute
    in float16 or bfloat16) of a layer of `model`, or `None`."""
    for layer in adapter.layer_tree(model):
        policy = getattr(layer, "dtype_policy", None)
        if getattr(policy, "compute_dtype", None) in _LOW_PRECISION:
            return policy.name
    return None


def float32_copy(model):
    """A copy of a Sequential or Functional `model` that computes in
    float32: every layer rebuilt from its config with `dtype="float32"`
    (under a float32 global policy, for sublayers created in `__init__`),
    then given the original's state (`copy_state`, values cast to
    float32).

    Raises:
        ValueError: for a model that cannot be rebuilt this way.
    """

    def clone(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return type(layer).from_config(config)

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = keras.models.clone_model(
            model, clone_function=clone, recursive=True
        )
        copy_state(model, copy)
    except Exception as error:  # noqa: BLE001 (re-raised with advice)
        raise ValueError(
            f"Model '{model.name}' computes in "
            f"{low_precision_policy(model)}, which the TFLite converter "
            "cannot export with built-in ops, and a float32 copy could not "
            f"be made ({_reason(error)}). Build the model again under "
            "keras.mixed_precision.set_global_policy('float32'), copy the "
            "weights (`float32_model.set_weights(model.get_weights())`) "
            "and export that."
        ) from error
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return copy
