"""`keras_guided.latency`: LiteRT latency tables and timing.

`LatencyTable`, `LayerLatency`, `build_latency_table`, `measure_latency`,
`InterleavedTimer` and the other public names live here; the parts are
private to this package: `_settings` (the measurement settings and the
runtime, checked), `_signatures` (what a layer's timing depends on),
`_sampling` (the sampled channel counts, timed into the cache), `_measure`
(timing in LiteRT), `_cache` (the on-disk cache), `_calibration` (ms per
FLOP and the whole-model calibration), `_interpolation` (a sampled grid
made monotone and interpolated), `_timing` (interleaved timers) and
`_check` (`LatencyTry`, `LatencyCheck`). Planning for a latency target
(the greedy, the measured loop) is `keras_guided.scoring`'s, over this
face; this package never imports `scoring`.

Latency tables: what each layer costs in LiteRT on this machine.

FLOPs are a stand-in for speed: on a phone CPU a depthwise convolution
costs far more per FLOP than a pointwise one, and a kernel runs faster at
channel counts its SIMD tiles like. A `LatencyTable` measures instead:

* every layer whose rule (`keras_guided.rules`) has a `latency` kind
  (`Conv1D`, `Conv2D`, `DepthwiseConv2D`, `Dense` and their subclasses,
  channels-last, `groups=1`) is converted alone, at its input shape,
  with the converter settings of `export_tflite`, and timed in the
  LiteRT interpreter (`ai_edge_litert`) on a small grid of kept input
  and output channel counts (`num_samples` per dimension: quarters of the
  full width rounded to multiples of 8, and the full width; a depthwise
  layer has one channel dimension);
* the interpreter's fixed cost of one `invoke` (timed once per settings
  on a one-unit Dense layer) is subtracted from every sample, so a layer
  is priced by what its kernel costs and small layers are not inflated by
  an overhead that pruning never removes;
* between samples the latency is interpolated bilinearly (linearly for
  depthwise), below the smallest sample extrapolated along the first
  segment, never below 0; the sampled grid is made non-decreasing in both
  counts first (more channels are never faster; timer noise is);
* any other layer with FLOPs (`SeparableConv2D`, `Conv2DTranspose`, ...)
  is *estimated*: its FLOPs times the measured layers' mean ms per FLOP;
* what the layers alone do not explain (element-wise layers, padding,
  residual adds, moving activations between kernels: about half of
  MobileNetV2's time at 224 x 224) is calibrated once on the whole model
  (`whole_model=True`): the model is converted and timed, and the time the
  priced layers leave unexplained is spread over the measured layers in
  proportion to the activations they write (output positions times output
  channels), a cost per kept output channel. The table's total at full
  width is then the measured latency of the whole model, and a latency
  target means a share of what the device will measure;
* layers with the same signature (class, timing-relevant config, input
  size, channel counts) are measured once, and every measured signature is
  cached on disk (a JSON file per runtime and settings, written
  atomically after each signature, so an interrupted build resumes).

The cache key holds everything that changes a timing: the quantization,
`num_threads`, `num_runs`, the statistic, `num_samples`, the versions of
`ai_edge_litert`, TensorFlow and Keras, and the CPU. A table built with
other settings is never reused.

References:
    Shen et al., "Structural Pruning via Latency-Saliency Knapsack"
    (HALP), NeurIPS 2022: latency lookup tables priced per channel count.
"""

import dataclasses
import math
import time

import numpy as np

from keras_guided import stats
from keras_guided import units as units_lib
from keras_guided.latency import _cache
from keras_guided.latency import _calibration
from keras_guided.latency import _interpolation
from keras_guided.latency import _measure
from keras_guided.latency import _sampling
from keras_guided.latency import _settings
from keras_guided.latency import _signatures
from keras_guided.latency._check import LatencyCheck
from keras_guided.latency._check import LatencyTry
from keras_guided.latency._settings import STATISTICS as STATISTICS
from keras_guided.latency._timing import InterleavedTimer
from keras_guided.latency._timing import LatencyComparison

BUILD_HINT = (
    "Build one with table = keras_guided.latency.build_latency_table(model) "
    "and pass latency_table=table."
)


@dataclasses.dataclass(frozen=True)
class LayerLatency:
    """The latency curve of one layer of a `LatencyTable`.

    Attributes:
        name: the layer's name (`"outer/inner"` inside a nested model).
        class_name: its class, e.g. `"Conv2D"`.
        kind: `"measured"` (timed in LiteRT) or `"estimated"` (FLOPs times
            the table's ms per FLOP).
        input_channels: the full input channel count (0 if estimated).
        output_channels: the full output channel count (0 if estimated).
        grids: one `(input samples, output samples, ms)` per call of the
            layer; `ms[i][j]` is the time at `input samples[i]` and
            `output samples[j]` (a depthwise layer has one output sample).
        flops: the layer's FLOPs at full width.
        ms_per_flop: the conversion used when estimated.
        ms_per_channel: the whole-model calibration: ms per kept output
            channel (per kept channel for depthwise) for what the layers
            alone do not explain; 0 without calibration.
        positions: output positions written per output channel, summed
            over the layer's calls (what the calibration spreads over).
        timed_as: how a measured layer is timed, its rule's `latency`
            (`"dense"`, `"conv"`, `"depthwise"`); `None` if estimated.
    """

    name: str
    class_name: str
    kind: str
    input_channels: int = 0
    output_channels: int = 0
    grids: tuple = ()
    flops: float = 0.0
    ms_per_flop: float = 0.0
    ms_per_channel: float = 0.0
    positions: float = 0.0
    timed_as: str = None

    def predict(self, input_channels=None, output_channels=None):
        """Latency in ms with the given kept channel counts (full width
        where `None`; a depthwise layer's outputs follow its inputs, so
        `output_channels` is ignored there); an estimated layer costs its
        full-width FLOPs times `ms_per_flop`."""
        if self.kind == "estimated":
            return self.flops * self.ms_per_flop
        cin, cout = self._kept(input_channels, output_channels)
        total = 0.0
        for ins, outs, ms in self.grids:
            rows = [_interpolation.interpolate(cout, outs, row) for row in ms]
            total += _interpolation.interpolate(cin, ins, rows)
        return max(total, 0.0) + self.ms_per_channel * self.written(
            input_channels, output_channels
        )

    def written(self, input_channels=None, output_channels=None):
        """The channels the layer writes at the kept counts (full width
        where `None`): its outputs; a depthwise layer's follow its inputs."""
        cin, cout = self._kept(input_channels, output_channels)
        return cin if self._depthwise else cout

    @property
    def _depthwise(self):
        return self.timed_as == "depthwise"

    def _kept(self, input_channels, output_channels):
        cin = self.input_channels if input_channels is None else input_channels
        cout = (
            self.output_channels
            if (output_channels is None or self._depthwise)
            else output_channels
        )
        return cin, cout


class LatencyTable:
    """Per-layer LiteRT latency of one model, measured on this machine.

    Build it with `keras_guided.latency.build_latency_table`; pass it to
    `keras_guided.prune_model(model, target={"latency": 0.4},
    latency_table=table)`.

    Attributes:
        model_name: the model it was built for.
        settings: the measurement settings and runtime (the cache key).
        layers: `{layer name: LayerLatency}` of every priced layer.
        ms_per_flop: mean ms per FLOP of the measured layers.
        num_measured: samples timed by this build.
        num_cached: samples read from the cache.
        build_seconds: wall time of the build.
        measured_ms: the whole model's measured latency at full width
            (`None` without the whole-model calibration).
        unexplained_ms: the part of `measured_ms` the layers alone did not
            explain, spread over them as `LayerLatency.ms_per_channel`.
    """

    def __init__(
        self,
        model_name,
        settings,
        layers,
        ms_per_flop,
        num_measured=0,
        num_cached=0,
        build_seconds=0.0,
        measured_ms=None,
        unexplained_ms=0.0,
    ):
        self.model_name = model_name
        self.settings = dict(settings)
        self.layers = dict(layers)
        self.ms_per_flop = float(ms_per_flop)
        self.num_measured = int(num_measured)
        self.num_cached = int(num_cached)
        self.build_seconds = float(build_seconds)
        self.measured_ms = None if measured_ms is None else float(measured_ms)
        self.unexplained_ms = float(unexplained_ms)

    def predict(self, layer, input_channels=None, output_channels=None):
        """Predicted ms of layer `layer` (a name) at the kept counts."""
        if layer not in self.layers:
            raise ValueError(
                f"The latency table of model '{self.model_name}' has no "
                f"layer '{layer}'. Known layers: {sorted(self.layers)[:8]}"
            )
        return self.layers[layer].predict(input_channels, output_channels)

    @property
    def total_ms(self):
        """Predicted ms of every priced layer at full width (with the
        whole-model calibration: the whole model's measured latency)."""
        return float(sum(entry.predict() for entry in self.layers.values()))

    def rows(self, widths=(1.0, 0.75, 0.5, 0.25)):
        """One dict per layer: predicted ms with each fraction of its
        input and output channels kept."""
        rows = []
        for entry in self.layers.values():
            row = {
                "layer": entry.name,
                "class": entry.class_name,
                "kind": entry.kind,
            }
            for width in widths:
                cin = max(1, round(entry.input_channels * width))
                cout = max(1, round(entry.output_channels * width))
                row[f"ms@{width:g}"] = entry.predict(cin, cout)
            rows.append(row)
        return rows

    def summary(self):
        """The table as markdown: per-layer ms at a few widths and totals."""
        lines = [
            stats.format_table(self.rows()),
            "",
            f"predicted total: {self.total_ms:.3f} ms "
            f"({_settings.describe(self.settings)})",
            "whole model: "
            + (
                "not calibrated (whole_model=False)"
                if self.measured_ms is None
                else f"measured {self.measured_ms:.3f} ms, of which "
                f"{self.unexplained_ms:.3f} ms not explained by the "
                "layers alone, spread per output channel"
            ),
            f"samples: {self.num_measured} measured, {self.num_cached} "
            f"cached, built in {self.build_seconds:.1f} s",
        ]
        return "\n".join(lines)

    def kernel_curve(self, layer):
        """`dims -> ms` of a measured layer's kernel shape (its kept input
        and output channels are the last two dims), or `None`."""
        entry = self.layers.get(layer)
        if entry is None or entry.kind != "measured":
            return None
        return lambda dims: entry.predict(dims[-2], dims[-1])

    def weight_price(self, layer, layer_object, key, flops_per_element):
        """`dims -> ms` of one weight of layer `layer` (a name) at its kept
        shape `dims`: the one latency price of a weight, used by
        `prune_model`'s latency targets (`scoring.KeptCost`) and the
        callback's live latency (`price`).

        A measured layer's kernel costs the table's prediction at its kept
        input and output channels (the last two dims), its other weights
        nothing; a weight of any other layer costs its kept size times its
        FLOPs per element (`flops_per_element`) times `ms_per_flop`.
        """
        curve = self.kernel_curve(layer)
        if curve is not None:
            kernel = getattr(layer_object, "kernel", None)
            if kernel is not None and key == units_lib.weight_key(
                layer_object, kernel
            ):
                return curve
            return _interpolation.no_cost
        per_element = float(flops_per_element) * self.ms_per_flop
        return lambda dims: math.prod(dims) * per_element

    def price(self, layer_cost, kept=None):
        """Predicted ms of one `stats.LayerCost` with its weights cut to
        `kept` (`{weight key: kept shape}`), the latency entry of the
        callback's cost model (`stats.price(..., prices={"latency":
        table.price})`): the sum of `weight_price` over its weights."""
        return float(
            sum(
                self.weight_price(
                    layer_cost.name, layer_cost.layer, weight.key, weight.flops
                )(shape)
                for weight, shape in layer_cost.kept_shapes(kept)
            )
        )

    def check_model(self, model, shapes=None):
        """Raises a `ValueError` unless the table was built for `model`."""
        expected = {
            name: _fingerprint(entry)
            for name, entry in _price_layers(model, shapes, 1.0, None).items()
        }
        actual = {
            name: _fingerprint(entry) for name, entry in self.layers.items()
        }
        for name in list(expected) + list(actual):
            if expected.get(name) == actual.get(name):
                continue
            what = (
                "has no entry" if name not in actual else f"has {actual[name]}"
            )
            raise ValueError(
                f"`latency_table` does not match model '{model.name}': it "
                f"was built for model '{self.model_name}'. For layer "
                f"'{name}' the model has {expected.get(name, 'no layer')} "
                f"but the table {what}. {BUILD_HINT}"
            )


def build_latency_table(
    model,
    quantization=None,
    num_threads=1,
    num_samples=4,
    num_runs=20,
    statistic="min",
    cache_dir=None,
    verbose=1,
    whole_model=True,
):
    """Measures (or reads from the cache) the latency table of `model`.

    Args:
        model: a built Sequential or Functional `keras.Model`; it is not
            modified (each layer is rebuilt alone for timing).
        quantization: the export mode to time, as in `export_tflite`:
            `None` (float32), `"dynamic"`, `"float16"` or `"int8"`
            (calibrated on random data; int8 timings do not depend on the
            values). Defaults to `None`.
        num_threads: LiteRT interpreter threads. Defaults to 1.
        num_samples: channel counts sampled per dimension (>= 2). Defaults
            to 4.
        num_runs: timed runs per sample after a warm-up. Defaults to 20.
        statistic: `"min"` or `"median"` of those runs. Defaults to
            `"min"` (steadiest on a shared machine).
        cache_dir: where measured signatures are kept; `False` disables
            the cache. Defaults to `None`: `$KERAS_GUIDED_CACHE` or
            `~/.cache/keras_guided`, subfolder `latency`.
        verbose: 1 shows a progress bar while measuring. Defaults to 1.
        whole_model: also convert and time the whole model once (cached
            like the layers), and spread the time the layers alone do not
            explain over them per output channel, so the table's total is
            the model's measured latency. Defaults to `True`; `False`
            prices the layers only (a model that does not convert whole,
            e.g. with several inputs, is priced that way with a warning).

    Returns:
        A `LatencyTable`.

    Raises:
        ValueError: for a bad setting.
        RuntimeError: when something must be measured under a
            non-TensorFlow backend (conversion is TensorFlow's); a table
            read whole from the cache builds on any backend.
        ImportError: when something must be measured without
            `ai_edge_litert`.
    """
    settings = _settings.check_settings(
        quantization, num_threads, num_samples, num_runs, statistic
    )
    start = time.perf_counter()
    signatures = {}
    for entry in _price_layers(model, None, 1.0, None).values():
        for signature in entry.grids:
            signatures[_signatures.cache_key(signature)] = signature
    path = _cache.cache_path(cache_dir, _signatures.cache_key(settings))
    cache = _cache.read(path, _cache.FORMAT)
    total, num_cached = _sampling.measure_missing(
        signatures, cache, path, settings, num_samples, verbose
    )
    table_layers = _price_layers(model, None, None, cache)
    measured_ms, unexplained = None, 0.0
    if whole_model:
        measured_ms = _calibration.whole_model_ms(
            model, settings, signatures, cache, path
        )
    if measured_ms is not None:
        table_layers, unexplained = _calibration.calibrate(
            table_layers, measured_ms
        )
    return LatencyTable(
        model.name,
        settings,
        table_layers,
        _calibration.ms_per_flop(table_layers),
        total,
        num_cached,
        time.perf_counter() - start,
        measured_ms,
        unexplained,
    )


def measure_latency(
    model,
    quantization=None,
    num_threads=1,
    num_runs=50,
    statistic="min",
    representative_data=None,
):
    """Measured LiteRT latency (ms, batch 1) of the whole `model`.

    Converted exactly as `export_tflite` converts it, timed like a table's
    samples, so it compares with `LatencyTable.total_ms`.

    Args:
        model: a built single-input `keras.Model`.
        quantization: as in `build_latency_table`. Defaults to `None`.
        num_threads: interpreter threads. Defaults to 1.
        num_runs: timed runs after a warm-up. Defaults to 50.
        statistic: `"min"` or `"median"`. Defaults to `"min"`.
        representative_data: int8 calibration inputs; random when `None`.

    Returns:
        The latency in milliseconds (float).
    """
    settings = _settings.check_settings(
        quantization, num_threads, 2, num_runs, statistic
    )
    _measure.check_runtime()
    return _measure.time_model(model, settings, representative_data)


def check_is_table(table):
    """Raises a `ValueError` unless `table` is a `LatencyTable` (the
    `latency_table=` of `prune_model`, `scoring` and `GuidedPruning`)."""
    if not isinstance(table, LatencyTable):
        raise ValueError(
            "`latency_table` must be a keras_guided.latency.LatencyTable. "
            f"Received: {type(table).__name__}. " + BUILD_HINT
        )


def _price_layers(model, shapes, ms_per_flop, cache):
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


def _fingerprint(entry):
    """How a layer is priced, for matching a table with a model."""
    if entry.kind == "estimated":
        return f"{entry.class_name} (estimated, {entry.flops:.0f} FLOPs)"
    return (
        f"{entry.class_name} with {entry.input_channels} input and "
        f"{entry.output_channels} output channels"
    )


__all__ = [
    "InterleavedTimer",
    "LatencyCheck",
    "LatencyComparison",
    "LatencyTable",
    "LatencyTry",
    "LayerLatency",
    "build_latency_table",
    "measure_latency",
]
