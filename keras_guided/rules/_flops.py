"""FLOPs per weight element of each built-in layer (`rule.flops`)."""

import numpy as np

from keras_guided import _weights


def _einsum_flops(layer, input_shape, output_shape):
    """One MAC per kernel element for each combination of the letters the
    kernel does not hold (the batch letter aside): `"bqm,muh->bquh"` costs
    `2 * q` per kernel element, and so does `"bquh,uhm->bqm"`."""
    equation = layer.equation
    if "." in equation:
        return _DENSE_FLOPS(layer, input_shape, output_shape)
    inputs, output = equation.split("->")
    source, kernel = inputs.split(",")
    sizes = {}
    for letters, shape in ((source, input_shape), (output, output_shape)):
        for letter, size in zip(letters, tuple(shape)):
            if sizes.get(letter) is None:
                sizes[letter] = size
    free = [
        letter
        for letter in dict.fromkeys(source + output)
        if letter not in kernel and letter != source[0]
    ]
    if any(sizes.get(letter) is None for letter in free):
        raise UnknownSizeError(layer, input_shape)
    return {"kernel": 2 * int(np.prod([sizes[c] for c in free]))}


# ------------------------------------------------------------------ FLOPs
class UnknownSizeError(ValueError):
    """A layer's FLOPs depend on a length the model leaves unknown.

    Attributes:
        layer: the layer.
        shape: the tensor shape with the unknown (`None`) lengths.
    """

    def __init__(self, layer, shape, advice=None):
        self.layer = layer
        self.shape = tuple(shape)
        self.base = (
            f"Cannot count FLOPs of layer '{layer.name}' "
            f"({type(layer).__name__}): its tensor of shape {self.shape} "
            "has unknown spatial dimensions."
        )
        if advice is None:
            advice = (
                "Pass `sample_inputs=` to `prune_model` (their shapes fill "
                "in the unknown sizes), build the model with a fixed input "
                "size, or use a 'params' target, which needs no FLOPs."
            )
        super().__init__(f"{self.base} {advice}")

    def with_advice(self, advice):
        """The same error with the advice of the caller that met it."""
        return UnknownSizeError(self.layer, self.shape, advice)


def _spatial_size(shape, layer):
    """Product of the spatial dimensions of a channels-last shape."""
    spatial = tuple(shape)[1:-1]
    if any(d is None for d in spatial):
        raise UnknownSizeError(layer, shape)
    return int(np.prod(spatial)) if spatial else 1


def _flops_per_input_position(*names):
    """Each weight element: one MAC per input position (Dense, transpose)."""

    def flops(layer, input_shape, output_shape):
        return {name: 2 * _spatial_size(input_shape, layer) for name in names}

    return flops


def _flops_per_output_position(*names):
    """Each weight element: one MAC per output position (Conv)."""

    def flops(layer, input_shape, output_shape):
        return {name: 2 * _spatial_size(output_shape, layer) for name in names}

    return flops


def is_reverse_embedding_call(input_shape, output_shape):
    """Whether an Embedding call maps vectors back to the vocabulary
    (keras-hub's `ReversibleEmbedding(x, reverse=True)`, a language
    model's tied output projection) rather than looking ids up: its input
    keeps its rank instead of gaining the embedding axis."""
    return len(tuple(input_shape)) == len(tuple(output_shape))


def _embedding_flops(layer, input_shape, output_shape):
    """A lookup is free; a reverse call is a matrix product: one MAC per
    embedding element (or untied reverse one) per input position."""
    if not is_reverse_embedding_call(input_shape, output_shape):
        return {}
    names = [v.name for v in layer.weights]
    name = (
        "reverse_embeddings"
        if "reverse_embeddings" in names
        else ("embeddings")
    )
    return {name: 2 * _spatial_size(input_shape, layer)}


def _user_producer_flops(names):
    def flops(layer, input_shape, output_shape):
        spatial = _spatial_size(output_shape, layer)
        return {name: 2 * spatial for name in names}

    return flops


def _recurrent_flops(layer, input_shape, output_shape):
    """One multiply-accumulate per kernel and recurrent-kernel element per
    time step (an LSTM's four gates are the kernels' 4 x units columns);
    biases and gate activations are not counted."""
    steps = tuple(input_shape)[1]
    if steps is None:
        _spatial_size(input_shape, layer)  # raises with advice
    return {"kernel": 2 * steps, "recurrent_kernel": 2 * steps}


def _inner_flops(wrapper, inner, input_shape, output_shape, times=1):
    """The FLOPs of the layer `inner` that `wrapper` calls, keyed by the
    wrapper's weight keys, times `times`; `None` if `inner` is unpriced."""
    from keras_guided.rules import rule_for  # the registry holds these rules

    rule = rule_for(inner)
    if rule is None or rule.flops is None:
        return None if inner.weights else {}
    costs = rule.flops(inner, input_shape, output_shape)
    if costs is None:
        return None
    keys = {
        _weights.weight_key(inner, v): _weights.weight_key(wrapper, v)
        for v in inner.weights
    }
    return {
        keys[key]: times * value for key, value in costs.items() if key in keys
    }


def _bidirectional_flops(layer, input_shape, output_shape):
    """Both directions, each priced as its own recurrent layer on the whole
    input (the merge, a concatenation or a sum, costs nothing here)."""
    costs = {}
    for inner in (layer.forward_layer, layer.backward_layer):
        inner_costs = _inner_flops(
            layer,
            inner,
            input_shape,
            inner.compute_output_shape(tuple(input_shape)),
        )
        if inner_costs is None:
            return None
        costs.update(inner_costs)
    return costs


def _time_distributed_flops(layer, input_shape, output_shape):
    """The inner layer on one time step, once per step."""
    steps = tuple(input_shape)[1]
    if steps is None:
        _spatial_size(input_shape, layer)  # raises with advice
    step_input = (tuple(input_shape)[0],) + tuple(input_shape)[2:]
    step_output = (tuple(output_shape)[0],) + tuple(output_shape)[2:]
    return _inner_flops(
        layer, layer.layer, step_input, step_output, times=steps
    )


def _no_flops(layer, input_shape, output_shape):
    """Channel-wise arithmetic: not counted (see `keras_guided.stats`)."""
    return {}


def _attention_flops(layer, input_shape, output_shape):
    """Projections, plus the scores and the weighted sum of every head.

    `input_shape` is the query's. The attention itself (2 x Tq x Tk x heads
    x (key_dim + value_dim)) is charged to the query bias entries (heads x
    key_dim), so it shrinks with the heads.
    """
    query_steps = _spatial_size(input_shape, layer)
    # The key's length is not known from the query's shape (Keras keeps no
    # record of it on the layer): priced as self-attention, key length =
    # query length.
    key_steps = query_steps
    key_dim = layer.key_dim
    value_dim = layer.value_dim or key_dim
    costs = {
        "query/kernel": 2 * query_steps,
        "key/kernel": 2 * key_steps,
        "value/kernel": 2 * key_steps,
        "attention_output/kernel": 2 * query_steps,
    }
    attention = 2 * query_steps * key_steps * (key_dim + value_dim)
    if layer.use_bias:
        costs["query/bias"] = attention / key_dim
    else:
        costs["query/kernel"] += (
            attention / key_dim / int(tuple(input_shape)[-1])
        )
    return costs


_DENSE_FLOPS = _flops_per_input_position("kernel")
_CONV_FLOPS = _flops_per_output_position("kernel")
_TRANSPOSE_FLOPS = _flops_per_input_position("kernel")
_SEPARABLE_FLOPS = _flops_per_output_position(
    "depthwise_kernel", "pointwise_kernel"
)
