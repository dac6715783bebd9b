"""Constants of removed units: propagated through the graph, folded into
the consumers' biases (step 3 of `prune_model`, see `keras_guided.surgery`)."""

import keras
import numpy as np
from keras import ops

from keras_guided import _copies
from keras_guided import _keras_adapter as adapter
from keras_guided import graph as graph_lib
from keras_guided import rules as rules_lib
from keras_guided import units as units_lib
from keras_guided.surgery._rebuild import _standard_config
from keras_guided.surgery._verification import _PROBE_SIZE


class Constants:
    """The constants and folding part of `_Rewriter` (a mixin: it reads
    the rewriter's analysis, plan and shapes)."""

    # ---------------------------------------------------------- constants

    def _fold_note(self, note):
        """A note on constants folded approximately (or not at all): the
        report's notes, and what an inexact verification quotes."""
        self.notes.append(note)
        self.folding_notes.append(note)

    def _ordered_nodes(self, functional):
        yield from adapter.graph_nodes(functional)

    def propagate_constants(self):
        self.consts = {}
        self.consumer_inputs = []  # (layer, input tensor, node)
        self._propagate(graph_lib._functional_of(self.analysis.model))

    def _propagate(self, functional):
        for node in self._ordered_nodes(functional):
            op = node.operation
            inner = graph_lib.inner_graph(op, node)
            if inner is not None:
                for outer, inner_in in zip(node.input_tensors, inner.inputs):
                    if id(outer) in self.consts:
                        self.consts[id(inner_in)] = self.consts[id(outer)]
                self._propagate(inner)
                for inner_out, outer in zip(inner.outputs, node.outputs):
                    if id(inner_out) in self.consts:
                        self.consts[id(outer)] = self.consts[id(inner_out)]
                continue
            if self._is_producer(op):
                self.consumer_inputs.append((op, node.input_tensors[0], node))
            self._node_constants(node, op)

    def _node_constants(self, node, op):
        wanted = []
        for tensor in node.outputs:
            mask = self.removed_mask(tensor)
            if mask is None:
                mask = np.zeros(0, dtype=bool)
            wanted.append((tensor, mask))
        if not any(mask.any() for _, mask in wanted):
            return
        try:
            if units_lib.layer_family(op) == "embedding":
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
            self._fold_note(
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
                value = self._noise(shape, dtype)
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

    def _noise(self, shape, dtype):
        """Standard normal noise of `shape`, a fresh array: a window of one
        pool drawn once, at a random start never used by the last calls
        (two windows at different starts are independent element by
        element), so each probe does not draw its own millions."""
        size = int(np.prod(shape))
        pool = self._pool
        if pool is None or len(pool) < 4 * size:
            pool = self._pool = self.rng.standard_normal(
                max(4 * size, 1 << 16), dtype=np.float32
            )
            self._recent = []
        while True:
            start = int(self.rng.integers(0, len(pool) - size + 1))
            if start not in self._recent:
                break
        self._recent = self._recent[-7:] + [start]
        return pool[start : start + size].reshape(shape).astype(dtype)

    def _is_producer(self, op):
        """Whether `op` creates units (a depthwise-style grouped Conv, or a
        producer on untracked channels, only passes them on)."""
        return _is_producer(op) and (
            id(op) in self.analysis.producer_ids
            or units_lib.layer_family(op) != "conv"
        )

    def _shape(self, tensor):
        """The probe shape of `tensor`: batch 1, lengths of real inputs."""
        shape = list(self.shapes.get(id(tensor), tensor.shape))
        shape[0] = 1
        return tuple(_PROBE_SIZE if d is None else int(d) for d in shape)

    def _usable(self, tensor, mask):
        """Removed channels of `tensor` that are constant where read."""
        const = self.consts.get(id(tensor))
        if const is None:
            return np.zeros(len(mask), dtype=bool), None
        finite = np.isfinite(const).reshape(-1, const.shape[-1]).all(axis=0)
        return mask & finite, const

    def unfoldable_roots(self):
        """Removed units whose channel is not constant at a consumer."""
        bad = set()
        for _, tensor, _ in self.consumer_inputs:
            mask = self.removed_mask(tensor)
            if mask is None or not mask.any():
                continue
            usable, _ = self._usable(tensor, mask)
            units = self.analysis.tensor_units[id(tensor)]
            bad.update(int(units[c]) for c in np.flatnonzero(mask & ~usable))
        return bad

    # ------------------------------------------------------------ folding
    def fold_constants(self):
        """Bias deltas of consumers from the constants of removed inputs."""
        self.deltas = {}
        folded = {}
        for layer, tensor, _ in self.consumer_inputs:
            mask = self.removed_mask(tensor)
            if mask is None or not mask.any():
                continue
            usable, const = self._usable(tensor, mask)
            if id(layer) in folded:
                x = np.where(usable, np.nan_to_num(const), 0.0)
                first = folded[id(layer)]
                if x.shape != first.shape or not np.allclose(x, first):
                    self._fold_note(
                        f"{graph_lib.describe(layer)} is shared and its "
                        "calls read different constants from removed inputs;"
                        " the constants of its first call are folded"
                    )
                continue
            if (usable != mask).any():
                self._fold_note(
                    f"removed inputs of {graph_lib.describe(layer)} are not "
                    "constant; they are dropped without folding"
                )
            if not usable.any():
                continue
            x = np.where(usable, np.nan_to_num(const), 0.0).astype("float32")
            folded[id(layer)] = x
            response = _linear_response(layer, x)
            if response is None:
                self._fold_note(
                    f"cannot fold constants into {graph_lib.describe(layer)}"
                )
                continue
            delta = _center(response)
            flat = response.reshape(-1, response.shape[-1])
            if not np.allclose(flat, delta, rtol=1e-5, atol=1e-6):
                self._fold_note(
                    f"constants folded into {graph_lib.describe(layer)} are "
                    "exact away from the borders only (padding, strides); "
                    "see max_abs_diff"
                )
            if np.any(delta != 0):
                self.deltas[id(layer)] = delta


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


def _center(value):
    """The channel vector at the center of every non-batch, non-last axis."""
    value = np.asarray(value)
    index = (0,) + tuple(d // 2 for d in value.shape[1:-1])
    return value[index].astype(np.float64)


def _linear_response(layer, x):
    """Pre-activation, bias-free response of a consumer to `x`."""
    family = units_lib.layer_family(layer)
    if family in rules_lib.KERNEL_FAMILIES:
        config = _copies.layer_config(layer)
        config.update(activation="linear", name=layer.name + "_fold_probe")
        config = rules_lib.without_bias(layer, config)
        config = _standard_config(config)
        # A throwaway layer: built without drawing its initial weights.
        for key in config:
            if key.endswith("_initializer"):
                config[key] = "zeros"
        probe = type(layer).from_config(config)
        probe.build(x.shape)
        weights = [
            ops.convert_to_numpy(v.value)
            for v in layer.weights
            if v.name != "bias"
        ]
        probe.set_weights(weights)
        return ops.convert_to_numpy(probe(x)).astype(np.float64)
    if rules_lib.user_rule(layer) is not None:
        response = ops.convert_to_numpy(layer(x))
        base = ops.convert_to_numpy(layer(np.zeros_like(x)))
        return (response - base).astype(np.float64)
    return None
