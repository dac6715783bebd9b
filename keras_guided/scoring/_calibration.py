"""Importance from calibration data: what each unit does on the user's
batches, not how large its weights are.

For language models the field ranks units by forward passes over a
calibration set: Minitron (Muralidharan et al., 2024) by the magnitude of
each FFN neuron's activation and of each head's attention output,
Wanda-sp and FLAP (An et al., 2024) by weight x input norm.
`calibration_scores` does both, in the form `unit_scores` returns (one
array per unit group), so every planner takes them unchanged.

Where a unit is read. A unit's channel enters each of its *consumers*
(the slices of role `"consumer"`: the next Dense rows, the next
convolution's input channels, the output projection's rows of a head),
so the statistics are taken on the consumer's input, at the positions
the group's slice names: for a transformer FFN unit that is the hidden
activation feeding the down projection (after the activation and the
gate); for a convolution filter, its channel after BatchNormalization
and the activation; for a head (with grouped-query attention, a
key/value head and its query heads, one unit), its attention output
before the output projection. A group without a consumer that is called
(the model's output layer) is read at its producers' outputs instead.

How it is read. Keras has no forward hooks, so the `call` of each
reading layer is shadowed on the instance while the batches run
(`_keras_adapter.recording_calls`) and restored afterwards, even on an
error: the model's weights, configs and classes are not touched. The
statistics are sums over tokens accumulated batch by batch in float64
(never the activations themselves), so the memory is one batch's
activations plus a few numbers per unit, and batching the same data
differently gives the same scores up to float rounding.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_guided import _keras_adapter as adapter
from keras_guided import graph as graph_lib
from keras_guided import units as units_lib
from keras_guided import validation
from keras_guided.scoring._importance import dead_units
from keras_guided.scoring._importance import unit_scores
from keras_guided.scoring._importance import weight_value

METHODS = ("activation", "wanda")


@dataclasses.dataclass
class _Reading:
    """Where one unit group is read: a layer's input (`"input"`) or output
    (`"output"`) tensor, along `axis`, at `positions`.

    `feature` lists the letters of the other tensor axes that belong to one
    position (a head's `head_dim`), from an `EinsumDense` equation; `None`
    means a channels-last tensor (the last axis, nothing else per
    position). The accumulators hold, per position along the axis, the sum
    over tokens of the position's L2 norm (`norm_sum`) and of the squares
    of its values (`square_sum`, per feature), and the token count.
    """

    group: int
    layer: object
    source: str
    positions: np.ndarray
    length: int
    spec: str = None  # the tensor's einsum letters, `None`: channels last
    letter: str = None  # the letter of the unit axis
    kernel_spec: str = ""  # the kernel's einsum letters
    kernel: np.ndarray = None  # wanda: sum of |W| per (position, feature)
    norm_sum: np.ndarray = None
    square_sum: np.ndarray = None
    count: float = 0.0

    def axes(self, rank):
        """`(unit axis, feature axes)` of a tensor of `rank`, or `None`
        when the spec does not fit it."""
        if self.spec is None:
            return rank - 1, ()
        before, dots, after = self.spec.partition("...")
        if not dots and len(before) != rank:
            return None
        if dots and len(before) + len(after) > rank:
            return None
        where = {c: i for i, c in enumerate(before)}
        where.update({c: rank - len(after) + i for i, c in enumerate(after)})
        features = tuple(where[c] for c in self.feature_letters)
        return where[self.letter], features

    @property
    def feature_letters(self):
        if self.spec is None:
            return ""
        return "".join(
            c for c in self.spec.replace("...", "") if c in self.kernel_spec
        ).replace(self.letter, "")

    def add(self, x, mask):
        """Adds the statistics of one call's tensor `x`; `mask` is the
        batch's padding mask `(batch, length)`, or `None`."""
        if x is None or not hasattr(x, "shape") or len(x.shape) < 1:
            return
        located = self.axes(len(x.shape))
        if located is None:
            return
        axis, features = located
        shape = tuple(x.shape)
        if shape[axis] != self.length:
            return  # another call of a shared layer (a reversed embedding)
        tokens = [
            a for a in range(len(shape)) if a != axis and a not in features
        ]
        x = ops.cast(x, "float32")
        x = ops.transpose(x, tokens + [axis] + list(features))
        feature_size = int(
            np.prod([shape[a] for a in features], dtype=np.int64)
        )
        x = ops.reshape(x, (-1, self.length, feature_size))
        squares = ops.square(x)
        norms = ops.sqrt(ops.sum(squares, axis=-1))
        token_shape = tuple(shape[a] for a in tokens)
        if (
            mask is not None
            and tokens[:2] == [0, 1]
            and token_shape[:2] == tuple(mask.shape)
        ):
            weights = np.broadcast_to(
                np.reshape(mask, tuple(mask.shape) + (1,) * (len(tokens) - 2)),
                token_shape,
            ).reshape(-1)
        else:
            weights = np.ones(int(np.prod(token_shape, dtype=np.int64)))
        weights = ops.convert_to_tensor(weights.astype("float32"))
        norm_sum = ops.einsum("t,tp->p", weights, norms)
        square_sum = ops.einsum("t,tpf->pf", weights, squares)
        norm_sum = ops.convert_to_numpy(norm_sum).astype(np.float64)
        square_sum = ops.convert_to_numpy(square_sum).astype(np.float64)
        if self.norm_sum is None:
            self.norm_sum = np.zeros_like(norm_sum)
            self.square_sum = np.zeros_like(square_sum)
        self.norm_sum += norm_sum
        self.square_sum += square_sum
        self.count += float(ops.convert_to_numpy(ops.sum(weights)))

    def score(self, method):
        """Per-unit score of this reading (see `calibration_scores`)."""
        if method == "activation" or self.kernel is None:
            if method == "activation":
                per_position = self.norm_sum / self.count
            else:  # a producer's output: its RMS norm
                per_position = np.sqrt(
                    np.sum(self.square_sum, axis=-1) / self.count
                )
        else:
            rms = np.sqrt(self.square_sum / self.count)
            per_position = np.sum(rms * self.kernel, axis=-1)
        return np.sum(per_position[self.positions], axis=1)


def calibration_scores(
    model,
    data,
    *,
    method="activation",
    groups=None,
    on_unsupported="raise",
    batch_size=32,
    max_batches=None,
    verbose=1,
):
    """Importance of every unit from forward passes over calibration data.

    `"activation"` (Minitron): `s_u = mean_t ||a_{t,u}||`, the mean over
    tokens of the norm of the unit's activation where its consumer reads
    it (|a| for a channel, the L2 norm of the attention output for a
    head). `"wanda"` (Wanda-sp): `s_u = sum_j |W_{u,j}| * rms_t(x_{t,u})`,
    the consumer's weights of the unit times the RMS over tokens of the
    input each multiplies.

    Where each unit is read, and how, is in the module doc of
    `keras_guided.scoring._calibration`; in short, at the input of its
    consumers (the hidden activation feeding a transformer's down
    projection, a head's attention output before the output projection,
    a filter's channel after its BatchNormalization and activation), with
    the statistics summed batch by batch. The mean of |a| (not its RMS)
    is used for `"activation"`: it is Minitron's reduction over tokens,
    and a few outlier tokens, common in language models, weigh less in
    it; `"wanda"` uses the RMS, as its input norm.

    Positions where a `padding_mask` input is 0 are left out of a token
    axis pair `(batch, length)` of that shape. Units whose weights are
    all zero score 0 (removing them is exact, as in `default_scores`).
    Groups that no plan prunes and that no call reaches keep their
    weight-norm `unit_scores`.

    Args:
        model: a built Sequential or Functional `keras.Model` (a keras-hub
            backbone or task too); never modified.
        data: the calibration inputs: a NumPy array or tensor, or a dict
            or tuple of them (split into batches of `batch_size`), a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, or any other
            iterable of batches (a list, a generator). A batch that is a
            tuple `(x, y)` or `(x, y, sample_weight)` gives its `x`, as in
            `fit`; a dict batch is the model's named inputs.
        method: `"activation"` or `"wanda"`. Defaults to `"activation"`.
        groups: the `UnitGroup`s to score, from
            `keras_guided.find_unit_groups(model)`. Defaults to `None`:
            found with `on_unsupported`.
        on_unsupported: as in `keras_guided.find_unit_groups`, when
            `groups` is `None`; pass what `prune_model` will get. Defaults
            to `"raise"`.
        batch_size: rows per batch when `data` is arrays. Defaults to 32.
        max_batches: read at most this many batches, or `None` for all.
            Defaults to `None`.
        verbose: 0 silent, 1 a progress bar. Defaults to 1.

    Returns:
        A list (one per group) of non-negative float arrays of length
        `num_units`, like `unit_scores`: pass it to
        `keras_guided.prune_model(importance=...)`, to the planners
        (`plan_from_target(scores=...)`) or to
        `keras_guided.ScoreGuidance`.

    Raises:
        ValueError: for an unknown `method`, data that gives no batch, a
            bad `batch_size` or `max_batches`, a quantized model, or a
            prunable group that no call of the model reaches.

    Examples:
        >>> import keras, numpy as np, keras_guided
        >>> model = keras.Sequential([keras.Input((2,)),
        ...     keras.layers.Dense(2, kernel_initializer="identity",
        ...                        activation="relu", name="hidden"),
        ...     keras.layers.Dense(1, name="out")])
        >>> x = np.array([[1.0, 0.0], [3.0, 0.0]], "float32")
        >>> scores = keras_guided.scoring.calibration_scores(
        ...     model, x, verbose=0)
        >>> scores[0].tolist()  # unit 1 never fires on this data
        [2.0, 0.0]

    References:
        Muralidharan et al., Compact Language Models via Pruning and
        Knowledge Distillation (Minitron), arXiv:2407.14679.
        An et al., Fluctuation-based Adaptive Structured Pruning for Large
        Language Models (FLAP, with the Wanda-sp baseline),
        arXiv:2312.11983.
    """
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {METHODS}. Received: method={method!r}"
        )
    _check_count(batch_size, "batch_size")
    if max_batches is not None:
        _check_count(max_batches, "max_batches")
    validation.check_not_quantized(model, "calibration_scores cannot read")
    if groups is None:
        groups = graph_lib.find_unit_groups(
            model, on_unsupported=on_unsupported
        )
    readings = _readings(groups, method)
    by_layer = {}
    for reading in readings:
        by_layer.setdefault(id(reading.layer), []).append(reading)
    layers = list({id(r.layer): r.layer for r in readings}.values())
    current = {"mask": None}

    def record(layer, args, outputs):
        for reading in by_layer[id(layer)]:
            if reading.source == "input":
                tensor = args[0] if args else None
            else:
                tensor = outputs
                if isinstance(outputs, (list, tuple)):
                    tensor = outputs[0] if outputs else None
            reading.add(tensor, current["mask"])

    progress = keras.utils.Progbar(None, unit_name="batch") if verbose else None
    seen = 0
    with adapter.recording_calls(layers, record):
        for batch in _batches(data, batch_size):
            if max_batches is not None and seen >= max_batches:
                break
            mask = (
                batch.get("padding_mask") if isinstance(batch, dict) else None
            )
            current["mask"] = (
                None if mask is None else ops.convert_to_numpy(mask)
            )
            model(batch, training=False)
            seen += 1
            if progress is not None:
                progress.update(seen)
    if not seen:
        raise ValueError(
            "`data` gave no batch: calibration_scores needs at least one "
            "batch of model inputs. Received: data of type "
            f"{type(data).__name__} with nothing in it. Pass an array of "
            "inputs, a tf.data.Dataset or an iterable of batches."
        )
    return _scores(groups, readings, method)


def _check_count(value, name):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < 1
    ):
        raise ValueError(
            f"`{name}` must be a positive int. Received: {name}={value!r}"
        )


def _readings(groups, method):
    """The `_Reading`s of every group: one per consumer layer (deduplicated),
    and one per producer layer (used where no consumer is read)."""
    readings = []
    for group in groups:
        seen = set()
        for unit_slice in group.slices:
            if unit_slice.role not in ("consumer", "producer"):
                continue
            reading = _reading(group, unit_slice, method)
            if reading is None:
                continue
            key = (id(reading.layer), reading.source)
            if key in seen:
                continue
            seen.add(key)
            readings.append(reading)
    return readings


def _reading(group, unit_slice, method):
    """The `_Reading` of one slice, or `None` when its tensor axis is not
    known (a flattened axis, a weight of a bias, a depthwise multiplier)."""
    if not isinstance(unit_slice.axis, (int, np.integer)):
        return None
    variable = units_lib.get_weight(unit_slice.layer, unit_slice.weight)
    if not units_lib.is_input_weight(unit_slice.weight, variable.shape):
        return None
    layer = _owner(unit_slice.layer, variable)
    source = "input" if unit_slice.role == "consumer" else "output"
    weight_axis = int(unit_slice.axis) % len(variable.shape)
    length = int(variable.shape[weight_axis])
    positions = np.asarray(unit_slice.positions, dtype=np.int64).reshape(
        group.num_units, -1
    )
    equation = getattr(layer, "equation", None)
    if isinstance(equation, str):
        inputs, _, output = equation.replace(" ", "").partition("->")
        tensor_spec, _, kernel_spec = inputs.partition(",")
        if source == "output":
            tensor_spec = output
        if "." in kernel_spec or kernel_spec[weight_axis] not in tensor_spec:
            return None
        reading = _Reading(
            group.index,
            layer,
            source,
            positions,
            length,
            spec=tensor_spec,
            letter=kernel_spec[weight_axis],
            kernel_spec=kernel_spec,
        )
    else:
        expected = len(variable.shape) - (2 if source == "input" else 1)
        if weight_axis != expected:
            return None  # not the kernel's input (output) channel axis
        reading = _Reading(group.index, layer, source, positions, length)
    if method == "wanda" and source == "input":
        reading.kernel = _kernel_norms(
            weight_value(unit_slice.layer, unit_slice.weight),
            weight_axis,
            reading,
        )
    return reading


def _owner(layer, variable):
    """The innermost layer of `layer`'s tree that owns `variable` (the
    output projection inside a `MultiHeadAttention`)."""
    owner = layer
    for sub in adapter.layer_tree(layer):
        if any(v is variable for v in sub.weights) and len(sub.weights) < len(
            owner.weights
        ):
            owner = sub
    return owner


def _kernel_norms(kernel, weight_axis, reading):
    """Sum of |W| per (unit position, feature): over every kernel axis
    that is not the unit axis or a feature axis of the read tensor."""
    kernel = np.abs(kernel.astype(np.float64))
    if reading.spec is None:
        keep = [weight_axis]
    else:
        spec = reading.kernel_spec
        keep = [weight_axis] + [spec.index(c) for c in reading.feature_letters]
    others = tuple(a for a in range(kernel.ndim) if a not in keep)
    summed = np.sum(kernel, axis=others)
    # `summed` has the kept axes in ascending order; put them in `keep`'s.
    summed = np.transpose(summed, np.argsort(np.argsort(keep)))
    return summed.reshape(summed.shape[0], -1)


def _scores(groups, readings, method):
    """Per-group scores from the accumulated readings."""
    by_group = {}
    for reading in readings:
        if reading.count > 0:
            by_group.setdefault(reading.group, []).append(reading)
    fallback = None
    scores = []
    dead = dead_units(groups)
    for group in groups:
        found = by_group.get(group.index, [])
        consumers = [r for r in found if r.source == "input"]
        chosen = consumers or found
        if not chosen:
            if group.prunable:
                raise ValueError(
                    f"calibration_scores read no activation of unit group "
                    f"{group.index} (layers {group.layers}): no call of its "
                    "consumer or producer layers reached them on the data. "
                    "Check that the data are the model's inputs, or protect "
                    f"those layers (protected={group.layers[:1]})."
                )
            if fallback is None:
                fallback = unit_scores(groups)
            scores.append(fallback[group.index])
            continue
        group_scores = [r.score(method) for r in chosen]
        if method == "activation" or not consumers:
            combined = np.mean(group_scores, axis=0)
        else:
            combined = np.sum(group_scores, axis=0)
        combined = np.asarray(combined, dtype=np.float64)
        combined[dead[group.index]] = 0.0
        scores.append(combined)
    return scores


def _batches(data, batch_size):
    """The model inputs of every batch of `data` (see
    `calibration_scores`)."""
    if _is_arrays(data):
        yield from _split(data, batch_size)
        return
    if isinstance(data, keras.utils.PyDataset):
        count = data.num_batches
        items = (data[i] for i in range(len(data) if count is None else count))
    elif hasattr(data, "as_numpy_iterator"):  # a tf.data.Dataset
        items = data.as_numpy_iterator()
    else:
        try:
            items = iter(data)
        except TypeError:
            raise ValueError(
                "`data` must be arrays of model inputs, a tf.data.Dataset, "
                "a keras.utils.PyDataset or an iterable of batches. "
                f"Received: data of type {type(data).__name__}."
            ) from None
    for item in items:
        if isinstance(item, tuple):
            item = keras.utils.unpack_x_y_sample_weight(item)[0]
        yield item


def _is_arrays(data):
    if isinstance(data, dict):
        return bool(data) and all(_is_array(v) for v in data.values())
    if isinstance(data, tuple):
        return bool(data) and all(_is_array(v) for v in data)
    return _is_array(data)


def _is_array(value):
    return isinstance(value, np.ndarray) or (
        ops.is_tensor(value) and len(value.shape) >= 1
    )


def _split(data, batch_size):
    if isinstance(data, dict):
        rows = len(next(iter(data.values())))
        for start in range(0, rows, batch_size):
            yield {k: v[start : start + batch_size] for k, v in data.items()}
        return
    if isinstance(data, tuple):
        # `(x, y)` or `(x, y, sample_weight)`, as in `fit`.
        data = keras.utils.unpack_x_y_sample_weight(data)[0]
        yield from _split(data, batch_size)
        return
    for start in range(0, len(data), batch_size):
        yield data[start : start + batch_size]
