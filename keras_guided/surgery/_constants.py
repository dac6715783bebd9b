"""Constants of removed units, propagated through the graph (step 3 of
`prune_model`, see `keras_guided.surgery`).

A removed unit whose incoming weights are zero (or masked to zero) still
emits a constant: its bias through the activation, BN's shift, ... Each
layer is called on probes (the constants where known, noise elsewhere) in
graph order; an entry of a removed channel that two probes agree on is a
constant. `propagate_constants` returns them as a `Constants` value, which
`_folding` turns into bias deltas."""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_guided import _keras_adapter as adapter
from keras_guided import graph as graph_lib
from keras_guided import rules as rules_lib


@dataclasses.dataclass
class Constants:
    """What the propagation found.

    Attributes:
        values: `{tensor id: array}`, batch 1, the constant entries of
            its removed channels and NaN elsewhere.
        consumer_inputs: `(layer, input tensor, node)` of every call of a
            layer that creates units (the consumers constants fold into).
        notes: layers that could not be probed.
    """

    values: dict
    consumer_inputs: list
    notes: list

    def usable(self, tensor, mask):
        """Removed channels of `tensor` that are constant where read, and
        its constant array (or `None`)."""
        const = self.values.get(id(tensor))
        if const is None:
            return np.zeros(len(mask), dtype=bool), None
        finite = np.isfinite(const).reshape(-1, const.shape[-1]).all(axis=0)
        return mask & finite, const


class ProbeNoise:
    """Standard normal noise for the probes of one prune, seeded once.

    Each draw is a window of one pool drawn once, at a random start never
    used by the last calls (two windows at different starts are independent
    element by element), so each probe does not draw its own millions.
    """

    def __init__(self):
        self._rng = np.random.default_rng(0)
        self._pool = None
        self._recent = []  # the last window starts

    def draw(self, shape, dtype):
        """Noise of `shape` and `dtype`, a fresh array."""
        size = int(np.prod(shape))
        pool = self._pool
        if pool is None or len(pool) < 4 * size:
            pool = self._pool = self._rng.standard_normal(
                max(4 * size, 1 << 16), dtype=np.float32
            )
            self._recent = []
        while True:
            start = int(self._rng.integers(0, len(pool) - size + 1))
            if start not in self._recent:
                break
        self._recent = self._recent[-7:] + [start]
        return pool[start : start + size].reshape(shape).astype(dtype)


def propagate_constants(removal, shapes, noise):
    """The `Constants` of the removed channels of `removal`.

    Args:
        removal: a `Removal` (the analysis and the removed unit roots).
        shapes: `{tensor id: concrete shape}` where lengths are unknown.
        noise: the `ProbeNoise` of this prune.
    """
    found = Constants(values={}, consumer_inputs=[], notes=[])
    walk = _Walk(removal, shapes, noise, found)
    walk.graph(graph_lib.functional_graph(removal.analysis.model))
    return found


def unfoldable_roots(removal, constants):
    """Removed units whose channel is not constant at a consumer."""
    bad = set()
    for _, tensor, _ in constants.consumer_inputs:
        mask = removal.mask(tensor)
        if mask is None or not mask.any():
            continue
        usable, _ = constants.usable(tensor, mask)
        units = removal.analysis.tensor_units[id(tensor)]
        bad.update(int(units[c]) for c in np.flatnonzero(mask & ~usable))
    return bad


class _Walk:
    """One propagation: the graph walked in order, `found` filled in."""

    def __init__(self, removal, shapes, noise, found):
        self.removal = removal
        self.shapes = shapes
        self.noise = noise
        self.found = found
        self.consts = found.values

    def graph(self, functional):
        for node in adapter.graph_nodes(functional):
            op = node.operation
            inner = graph_lib.inner_graph(op, node)
            if inner is not None:
                for outer, inner_in in zip(node.input_tensors, inner.inputs):
                    if id(outer) in self.consts:
                        self.consts[id(inner_in)] = self.consts[id(outer)]
                self.graph(inner)
                for inner_out, outer in zip(inner.outputs, node.outputs):
                    if id(inner_out) in self.consts:
                        self.consts[id(outer)] = self.consts[id(inner_out)]
                continue
            if self._is_producer(op):
                self.found.consumer_inputs.append(
                    (op, node.input_tensors[0], node)
                )
            self._node_constants(node, op)

    def _node_constants(self, node, op):
        wanted = []
        for tensor in node.outputs:
            mask = self.removal.mask(tensor)
            if mask is None:
                mask = np.zeros(0, dtype=bool)
            wanted.append((tensor, mask))
        if not any(mask.any() for _, mask in wanted):
            return
        try:
            if _zero_when_masked(op):
                # A masked embedding column is zero for every token.
                values = [
                    [np.zeros(self._shape(node.outputs[0]), dtype="float32")]
                ]
            elif self._is_producer(op):
                # Masked incoming weights: the output is f(bias) whatever
                # the input, so a zero probe gives it; a Keras kernel layer
                # computes activation(bias) at every position on it, with
                # no call needed.
                if _bias_only(op):
                    values = [
                        [_bias_response(op, self._shape(node.outputs[0]))]
                    ]
                else:
                    values = [self._call(node, op, zeros=True)]
            else:
                values = [self._call(node, op), self._call(node, op)]
        except Exception as error:  # noqa: BLE001 (any layer may refuse)
            self.found.notes.append(
                f"could not probe {graph_lib.describe(op)} for constants "
                f"({type(error).__name__}); its removed channels are not "
                "folded"
            )
            return
        for i, (tensor, mask) in enumerate(wanted):
            if not mask.any():
                continue
            first = values[0][i].astype(np.float64)
            same = np.isfinite(first)
            for other in values[1:]:
                same &= np.isclose(first, other[i], rtol=1e-5, atol=1e-6)
            # Entries of removed channels that do not depend on the input.
            keep = same & mask.reshape((1,) * (first.ndim - 1) + (-1,))
            self.consts[id(tensor)] = np.where(keep, first, np.nan)

    def _call(self, node, op, zeros=False):
        """Calls `op` on probes: constants where known, noise elsewhere."""
        probes = {}
        for tensor in node.input_tensors:
            const = self.consts.get(id(tensor))
            shape = const.shape if const is not None else self._shape(tensor)
            dtype = keras.backend.standardize_dtype(tensor.dtype)
            if zeros or "int" in dtype:
                value = np.zeros(shape, dtype=dtype)
            else:
                value = self.noise.draw(shape, dtype)
                if "bool" in dtype:
                    value = _mask_probe(value)
                if const is not None:
                    np.copyto(
                        value, const, where=np.isfinite(const), casting="unsafe"
                    )
            probes[id(tensor)] = value
        args, kwargs = adapter.call_arguments(node, probes)
        outputs = op(*args, **kwargs)
        return [ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]

    def _is_producer(self, op):
        """Whether `op` creates units (a depthwise-style grouped Conv, or a
        producer on untracked channels, only passes them on)."""
        return _is_producer(op) and (
            id(op) in self.removal.analysis.producer_ids
            or not rules_lib.rule_for(op).grouped
        )

    def _shape(self, tensor):
        """The probe shape of `tensor`: batch 1, lengths of real inputs."""
        return graph_lib.probe_shape(self.shapes.get(id(tensor), tensor.shape))


def _mask_probe(noise):
    """A boolean probe (a padding mask, `Embedding(mask_zero=True)`'s
    `NotEqual`) drawn from `noise`: random, with the first entry of every
    row true. An all-false mask would make a masked average 0 / 0, so
    the constant of a removed channel behind it would look unknown; two
    different random masks show which outputs do not depend on it."""
    mask = np.asarray(noise) > 0
    mask[..., 0] = True
    return mask


def _is_producer(op):
    rule = rules_lib.rule_for(op)
    return rule is not None and rule.kind == "producer"


def _zero_when_masked(op):
    rule = rules_lib.rule_for(op)
    return rule is not None and rule.zero_when_masked


def _bias_only(op):
    """Whether `_bias_response` gives `op`'s output on a zero input: its
    rule says so (`LayerRule.bias_at_zero`) and `op` is of the very class
    the rule is registered for (a subclass may change `call`)."""
    rule = rules_lib.rule_for(op)
    return (
        rule is not None
        and rule.bias_at_zero
        and type(op) is rules_lib.ruled_class(op)
        and getattr(op, "data_format", None) in (None, "channels_last")
        and getattr(op, "quantization_mode", None) is None
    )


def _bias_response(op, shape):
    """activation(bias), in `op`'s compute dtype, broadcast to `shape`."""
    if op.use_bias:
        bias = ops.cast(op.bias, op.compute_dtype)
    else:
        bias = ops.zeros((shape[-1],), dtype=op.compute_dtype)
    value = ops.convert_to_numpy(op.activation(ops.reshape(bias, (1, -1))))
    return np.broadcast_to(
        value.reshape((1,) * (len(shape) - 1) + (-1,)), shape
    )
