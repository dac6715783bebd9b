"""The output spec of a call at concrete input shapes (`output_spec`), for
the layers whose own `compute_output_spec` leaves lengths unknown."""

import keras
from keras import layers as keras_layers


def output_spec(operation, args, kwargs):
    """`operation.compute_output_spec(*args, **kwargs)`, with the lengths an
    `EinsumDense` passes through filled in from its equation (its
    `output_shape` leaves them unknown).

    Raises:
        Exception: whatever `compute_output_spec` raises for these inputs.
    """
    outputs = operation.compute_output_spec(*args, **kwargs)
    if isinstance(operation, keras_layers.EinsumDense) and args:
        outputs = keras.ops.einsum(
            operation.equation,
            args[0],
            keras.KerasTensor(tuple(operation.kernel.shape)),
        )
    return outputs
