"""Why a layer's configuration cannot be pruned through (`rule.check`)."""

import numpy as np

from keras_guided.rules._flops import is_reverse_embedding_call
from keras_guided.rules._units import normalization_axis


# ------------------------------------------------------------------ checks
def _check_reshape(layer, input_shape, output_shape):
    channels_in, channels_out = tuple(input_shape)[-1], tuple(output_shape)[-1]
    if channels_in is None or channels_out is None:
        return (
            f"its channel counts are unknown (input {tuple(input_shape)}, "
            f"output {tuple(output_shape)})"
        )
    if channels_out % channels_in and channels_in % channels_out:
        return (
            f"it maps {channels_in} input channels to a last axis of "
            f"{channels_out}, and neither divides the other, so channels "
            "are scrambled"
        )
    return None


def _check_permute(layer, input_shape, output_shape):
    if layer.dims[-1] != len(layer.dims):
        return f"dims={tuple(layer.dims)} moves the channel axis"
    return None


def _check_channels_last(layer, input_shape, output_shape):
    data_format = getattr(layer, "data_format", None)
    if data_format == "channels_first":
        return (
            "data_format='channels_first' puts the channels on axis 1; "
            "keras_guided follows the last axis"
        )
    return None


def _check_rescaling(layer, input_shape, output_shape):
    if np.ndim(layer.scale) or np.ndim(layer.offset):
        return "its scale or offset is not a scalar"
    return None


def _check_normalization(layer, input_shape, output_shape):
    axis = normalization_axis(layer)
    rank = len(tuple(input_shape))
    if axis is None or axis % rank != rank - 1:
        return f"axis={layer.axis!r} is not the channel axis alone"
    return None


def _check_group_normalization(layer, input_shape, output_shape):
    reason = _check_normalization(layer, input_shape, output_shape)
    if reason is not None:
        return reason
    channels = tuple(input_shape)[-1]
    if layer.groups not in (-1, channels):
        return (
            f"groups={layer.groups} normalizes over groups of "
            f"{channels // layer.groups if channels else '?'} channels"
        )
    return None


def _check_embedding(layer, input_shape, output_shape):
    if is_reverse_embedding_call(input_shape, output_shape):
        return (
            "it is called in reverse (its embeddings project its input "
            "channels onto the vocabulary, tied weights)"
        )
    return None
