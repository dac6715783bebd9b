"""Constants of removed inputs folded into the consumers' biases (step 3
of `prune_model`, see `keras_guided.surgery`).

A consumer reads a removed channel's constant `c` through its kernel: its
output gains `W c` at every position (Dense: `bias += c @ removed_rows`;
Conv: the same, summed over the kernel window). `fold_constants` returns
that delta per consumer, the response at the center of the output (exact
away from 'same'-padding borders, and said so where the borders differ).
"""

import dataclasses

import numpy as np

from keras_guided import graph as graph_lib
from keras_guided import rules as rules_lib


@dataclasses.dataclass
class Folding:
    """The bias deltas of the consumers, and where folding is approximate.

    Attributes:
        deltas: `{layer id: array}`, the delta added to the layer's bias
            (a layer without bias gets one), only non-zero deltas.
        notes: consumers folded approximately, or not at all.
    """

    deltas: dict
    notes: list


def fold_constants(removal, constants):
    """The `Folding` of the `Constants` of `removal`'s removed channels."""
    deltas = {}
    notes = []
    folded = {}
    for layer, tensor, _ in constants.consumer_inputs:
        mask = removal.mask(tensor)
        if mask is None or not mask.any():
            continue
        usable, const = constants.usable(tensor, mask)
        if id(layer) in folded:
            x = np.where(usable, np.nan_to_num(const), 0.0)
            first = folded[id(layer)]
            if x.shape != first.shape or not np.allclose(x, first):
                notes.append(
                    f"{graph_lib.describe(layer)} is shared and its "
                    "calls read different constants from removed inputs;"
                    " the constants of its first call are folded"
                )
            continue
        if (usable != mask).any():
            notes.append(
                f"removed inputs of {graph_lib.describe(layer)} are not "
                "constant; they are dropped without folding"
            )
        if not usable.any():
            continue
        x = np.where(usable, np.nan_to_num(const), 0.0).astype("float32")
        folded[id(layer)] = x
        response = _linear_response(layer, x)
        if response is None:
            notes.append(
                f"cannot fold constants into {graph_lib.describe(layer)}"
            )
            continue
        delta = _center(response)
        flat = response.reshape(-1, response.shape[-1])
        if not np.allclose(flat, delta, rtol=1e-5, atol=1e-6):
            notes.append(
                f"constants folded into {graph_lib.describe(layer)} are "
                "exact away from the borders only (padding, strides); "
                "see max_abs_diff"
            )
        if np.any(delta != 0):
            deltas[id(layer)] = delta
    return Folding(deltas=deltas, notes=notes)


def _center(value):
    """The channel vector at the center of every non-batch, non-last axis."""
    value = np.asarray(value)
    index = (0,) + tuple(d // 2 for d in value.shape[1:-1])
    return value[index].astype(np.float64)


def _linear_response(layer, x):
    """Pre-activation, bias-free response of a consumer to `x`, from its
    rule (`LayerRule.linear_response`), or `None`."""
    rule = rules_lib.rule_for(layer)
    if rule is None or rule.linear_response is None:
        return None
    return rule.linear_response(layer, x)
