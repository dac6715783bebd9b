"""Copying a layer with all its state, the compile arguments, a config
with other values, and the saved state that rides on a model."""


def layer_tree(layer):
    """`layer` and every layer it tracks, depth first, in a fixed order
    (the order Keras saves them in)."""
    return list(layer._flatten_layers(include_self=True, recursive=True))


def replay_constructor(layer):
    """A new layer made by calling `layer`'s class again with the arguments
    Keras recorded when `layer` was created (`Operation._auto_config`),
    named like `layer`. Unbuilt, without state: see `_copies.copy_state`.

    For layers whose `get_config()` does not round-trip (an `__init__`
    without `name`, a config with computed entries the class does not take
    back).

    Raises:
        ValueError: when Keras did not record the arguments.
    """
    import inspect

    recorded = getattr(layer, "_auto_config", None)
    if recorded is None:
        raise ValueError(
            "Keras did not record the arguments it was created with (it "
            "records them only when they are plain values)"
        )
    kwargs = dict(recorded.config)
    parameters = inspect.signature(type(layer).__init__).parameters
    if "name" in parameters or any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    ):
        kwargs["name"] = layer.name
    new = type(layer)(**kwargs)
    if new.name != layer.name:
        if getattr(new, "_path", None) == new.name:
            new._path = layer.name
        new.name = layer.name
    return new


def compile_arguments(model):
    """The arguments `model.compile` was called with, as passed (the
    user's own loss, metric and optimizer objects), or `None` when `model`
    is not compiled or Keras did not record them."""
    if not getattr(model, "compiled", False):
        return None
    recorded = getattr(model, "_compile_config", None)
    config = getattr(recorded, "config", None)
    return dict(config) if isinstance(config, dict) else None


def config_with(layer, values):
    """`layer.get_config()` as it would read with the attributes in
    `values` (`{attribute: value}`) set to those values; `layer` itself is
    not changed.

    Keras' `get_config` reads the layer's attributes (`self.activation`,
    `self.kernel_regularizer`, ...), so a shallow view of the layer (its
    own attribute dict, copied, the few entries replaced) gives the config
    of the layer with other values, without touching the layer.
    """
    return layer_view(layer, values).get_config()


def layer_view(layer, values):
    """A shallow view of `layer`: a new object of its class sharing its
    attributes (variables, sublayers), those in `values` replaced. Reading
    it reads `layer`; `layer` itself is not changed."""
    view = object.__new__(type(layer))
    view.__dict__.update(layer.__dict__)
    view.__dict__.update(values)
    return view


def attach_saved_state(model, name, save, load):
    """Makes the weights files of `model` carry extra state.

    `save()` returns `{key: np.ndarray}`, written with the model's weights
    (`save_weights`, `BackupAndRestore`, `ModelCheckpoint`, `model.save`);
    loading weights (`load_weights`, `BackupAndRestore`) calls `load(state)`
    with the arrays read back (`{}` from a file without them). A second
    call for the same model and `name` re-points the one holder.
    """
    from keras.src.saving.keras_saveable import KerasSaveable

    class _SavedState(KerasSaveable):
        def _obj_type(self):
            # One of the types the weights walk knows; it only picks the
            # attributes to skip, and this object has no saveable ones.
            return "Loss"

        def save_own_variables(self, store):
            for key, value in self.save().items():
                store[key] = value

        def load_own_variables(self, store):
            # A weights store is not a dict: it has keys() but no iterator.
            self.load({key: store[key] for key in store.keys()})  # noqa: SIM118

    holder = model.__dict__.get(name)
    if holder is None:
        holder = _SavedState()
        # A plain attribute: Keras' tracking (layers, weights) never sees it.
        object.__setattr__(model, name, holder)
    holder.save = save
    holder.load = load
    return holder


def recording_calls(layers, record):
    """A context in which every eager call of each of `layers` also hands
    `record(layer, args, outputs)` its positional arguments and outputs.

    Keras has no forward hooks; `Operation.__call__` runs `self.call` looked
    up on the instance at each call, so the context shadows `call` on each
    layer *instance* (never its class) with a recording wrapper, and
    removes the wrapper when it ends, even on an error. The layers' weights,
    configs and class are not touched.
    """
    import contextlib

    @contextlib.contextmanager
    def context():
        shadowed = []
        try:
            for layer in layers:
                if "call" in layer.__dict__:
                    raise ValueError(
                        f"Layer '{layer.name}' ({type(layer).__name__}) has "
                        "its `call` replaced on the instance already; its "
                        "calls cannot be recorded."
                    )
                original = layer.call

                def call(*args, _layer=layer, _original=original, **kwargs):
                    outputs = _original(*args, **kwargs)
                    record(_layer, args, outputs)
                    return outputs

                object.__setattr__(layer, "call", call)
                shadowed.append(layer)
            yield
        finally:
            for layer in shadowed:
                object.__delattr__(layer, "call")

    return context()
