"""`trace_scope`: what lets a composite layer's call run on symbolic
inputs of unknown length, undone afterwards."""

import keras

# keras-hub's causal-mask helper, imported by name into every decoder
# module (`TransformerDecoder`, Llama, Mistral, Qwen, Gemma, ...).
_CAUSAL_MASK_MODULE = "keras_hub.src.layers.modeling.transformer_layer_utils"
_CAUSAL_MASK_NAME = "compute_causal_mask"


class TraceScope:
    """What `trace_scope` changed while a composite layer's call ran on
    symbolic inputs.

    Attributes:
        causal_masks: how many causal masks were built for any length (from
            the length reference) instead of from a length Keras does not
            know on symbolic tensors.
    """

    def __init__(self, length_reference):
        self.length_reference = length_reference
        self.causal_masks = 0


def trace_scope(layer, length_reference):
    """A context in which `layer.call` can run on symbolic inputs of
    unknown sequence length, returning a `TraceScope`.

    Two things stop a keras-hub decoder block there, and both are undone
    when the context ends:

    * keras-hub's `compute_causal_mask(batch, input_length, output_length)`
      calls `ops.arange(None)`: a symbolic tensor has no known length. In
      the context, the helper (in every module that imported it) builds the
      same mask from `length_reference`, a symbolic `(batch, length)`
      tensor of the call (its padding mask), with ops that keep the length
      unknown: `tril(einsum("bi,bj->bij", ones, ones))`. The traced graph
      then computes the mask for any length. Only the no-cache case (start
      index 0, lengths unknown) is replaced; everything else goes to the
      original helper.
    * A sublayer called with keyword arguments set to `None` that its
      `compute_output_spec` does not take (keras-hub's
      `CachedMultiHeadAttention(..., cache=None)`) cannot be called on
      symbolic tensors. In the context, such arguments are left out of the
      call when `None` is also their default in the sublayer's `call`, so
      the call means the same and its recorded node replays.
    """
    import contextlib
    import sys

    scope = TraceScope(length_reference)

    @contextlib.contextmanager
    def context():
        undo = []
        try:
            undo += _replace_causal_mask(scope, sys.modules)
            undo += _drop_unused_none_arguments(layer)
            yield scope
        finally:
            for restore in reversed(undo):
                restore()

    return context()


def _replace_causal_mask(scope, modules):
    helpers = modules.get(_CAUSAL_MASK_MODULE)
    original = getattr(helpers, _CAUSAL_MASK_NAME, None)
    if original is None:
        return []

    def compute_causal_mask(
        batch_size, input_length, output_length, cache_index=0
    ):
        reference = scope.length_reference
        unknown = input_length is None and output_length is None
        if (
            reference is None
            or not unknown
            or not (isinstance(cache_index, int) and cache_index == 0)
        ):
            return original(
                batch_size, input_length, output_length, cache_index
            )
        scope.causal_masks += 1
        ones = keras.ops.ones_like(reference, dtype="float32")
        if len(ones.shape) > 2:
            ones = keras.ops.max(ones, axis=tuple(range(2, len(ones.shape))))
        square = keras.ops.einsum("bi,bj->bij", ones, ones)
        return keras.ops.cast(keras.ops.tril(square), "bool")

    undo = []
    for module in list(modules.values()):
        if getattr(module, _CAUSAL_MASK_NAME, None) is original:
            setattr(module, _CAUSAL_MASK_NAME, compute_causal_mask)
            undo.append(
                lambda m=module: setattr(m, _CAUSAL_MASK_NAME, original)
            )
    return undo


def _drop_unused_none_arguments(layer):
    import inspect

    undo = []
    classes = {type(sub) for sub in layer._flatten_layers(include_self=False)}
    for cls in classes:
        spec = inspect.signature(cls.compute_output_spec).parameters
        if any(p.kind == p.VAR_KEYWORD for p in spec.values()):
            continue
        call = inspect.signature(cls.call).parameters
        droppable = frozenset(
            name
            for name, p in call.items()
            if name not in spec
            and p.default is None
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
        if not droppable:
            continue
        own = cls.__dict__.get("__call__")
        original = cls.__call__

        def __call__(
            self, *args, _original=original, _droppable=droppable, **kwargs
        ):
            kwargs = {
                k: v
                for k, v in kwargs.items()
                if not (v is None and k in _droppable)
            }
            return _original(self, *args, **kwargs)

        cls.__call__ = __call__
        if own is None:
            undo.append(lambda c=cls: delattr(c, "__call__"))
        else:
            undo.append(lambda c=cls, o=own: setattr(c, "__call__", o))
    return undo
