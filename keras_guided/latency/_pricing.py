"""A model's layers priced for a latency table: the signatures to measure,
or the measured grids, one `LayerLatency` per layer with FLOPs."""

import dataclasses
import math

import numpy as np

from keras_guided import stats
from keras_guided.latency import _calibration
from keras_guided.latency import _interpolation
from keras_guided.latency import _signatures
from keras_guided.latency._layer_latency import LayerLatency
from keras_guided.latency._settings import STATISTICS as STATISTICS


def price_layers(model, shapes, ms_per_flop, cache):
    """`{name: LayerLatency}` for every layer with FLOPs.

    With `cache=None` the grids hold signatures (what to measure); with a
    cache, the measured grids. `ms_per_flop=None` derives it from the
    measured layers.
    """
    rows = {
        name: weights
        for name, _, weights in stats.weight_costs(model, shapes=shapes)
    }
    entries = {}
    for name, layer, calls in stats.iter_layers(model, shapes=shapes):
        flops = float(
            sum(math.prod(shape) * per for shape, per in rows[name].values())
        )
        if flops <= 0:
            continue
        kind = _signatures.layer_kind(layer) if calls else None
        if kind is None:
            entries[name] = LayerLatency(
                name, type(layer).__name__, "estimated", flops=flops
            )
            continue
        grids = []
        for input_shape, _ in calls:
            signature = _signatures.layer_signature(layer, input_shape)
            if cache is None:
                grids.append(signature)
                continue
            found = cache[_signatures.cache_key(signature)]
            overhead = cache[_signatures.OVERHEAD]["ms"][0][0]
            grids.append(
                (
                    tuple(found["inputs"]),
                    tuple(found["outputs"]),
                    _interpolation.monotone(np.asarray(found["ms"]) - overhead),
                )
            )
        first = _signatures.layer_signature(layer, calls[0][0])
        positions = float(
            sum(math.prod(tuple(out)[1:-1] or (1,)) for _, out in calls)
        )
        entries[name] = LayerLatency(
            name,
            type(layer).__name__,
            "measured",
            first["inputs"],
            first["outputs"],
            tuple(grids),
            flops=flops,
            positions=positions,
            timed_as=kind,
        )
    if ms_per_flop is None:
        ms_per_flop = _calibration.ms_per_flop(entries)
    return {
        name: dataclasses.replace(entry, ms_per_flop=ms_per_flop)
        for name, entry in entries.items()
    }


def fingerprint(entry):
    """How a layer is priced, for matching a table with a model."""
    if entry.kind == "estimated":
        return f"{entry.class_name} (estimated, {entry.flops:.0f} FLOPs)"
    return (
        f"{entry.class_name} with {entry.input_channels} input and "
        f"{entry.output_channels} output channels"
    )
