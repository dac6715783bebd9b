"""`keras_guided.latency`: LiteRT latency tables and the latency loop.

`LatencyTable`, `InterleavedTimer` and the other public names live here;
the parts are private to this package: `_measure` (timing in LiteRT),
`_cache` (the on-disk cache), `_timing` (interleaved timers), `_plan`
(the latency greedy) and `_loop` (the measured prune-and-check loop).

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
import hashlib
import json
import math
import platform
import time
import warnings

import keras
import numpy as np

from keras_guided import export as export_lib
from keras_guided import rules
from keras_guided import stats
from keras_guided import units as units_lib
from keras_guided.latency import _cache
from keras_guided.latency import _measure
from keras_guided.latency._loop import LatencyCheck
from keras_guided.latency._loop import LatencyTry
from keras_guided.latency._timing import InterleavedTimer
from keras_guided.latency._timing import LatencyComparison
from keras_guided.stats._layers import iter_layers

STATISTICS = ("min", "median")
_FORMAT = 1
_TIMING_KEYS = ("kernel_size", "strides", "padding", "data_format",
                "dilation_rate", "groups", "activation", "use_bias",
                "depth_multiplier")
_OVERHEAD = "interpreter_overhead"
_OVERHEAD_SIGNATURE = {"class": "Dense", "kind": "dense",
                       "config": {"use_bias": True}, "spatial": [],
                       "inputs": 1, "outputs": 1}
_BUILD_HINT = (
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
            rows = [_interpolate(cout, outs, row) for row in ms]
            total += _interpolate(cin, ins, rows)
        return max(total, 0.0) + self.ms_per_channel * self.written(
            input_channels, output_channels)

    def written(self, input_channels=None, output_channels=None):
        """The channels the layer writes at the kept counts (full width
        where `None`): its outputs; a depthwise layer's follow its inputs."""
        cin, cout = self._kept(input_channels, output_channels)
        return cin if self._depthwise else cout

    @property
    def _depthwise(self):
        return self.class_name.startswith("Depthwise")

    def _kept(self, input_channels, output_channels):
        cin = self.input_channels if input_channels is None else \
            input_channels
        cout = self.output_channels if (
            output_channels is None or self._depthwise) else output_channels
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

    def __init__(self, model_name, settings, layers, ms_per_flop,
                 num_measured=0, num_cached=0, build_seconds=0.0,
                 measured_ms=None, unexplained_ms=0.0):
        self.model_name = model_name
        self.settings = dict(settings)
        self.layers = dict(layers)
        self.ms_per_flop = float(ms_per_flop)
        self.num_measured = int(num_measured)
        self.num_cached = int(num_cached)
        self.build_seconds = float(build_seconds)
        self.measured_ms = None if measured_ms is None else float(
            measured_ms)
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
            row = {"layer": entry.name, "class": entry.class_name,
                   "kind": entry.kind}
            for width in widths:
                cin = max(1, round(entry.input_channels * width))
                cout = max(1, round(entry.output_channels * width))
                row[f"ms@{width:g}"] = entry.predict(cin, cout)
            rows.append(row)
        return rows

    def summary(self):
        """The table as markdown: per-layer ms at a few widths and totals."""
        lines = [stats.format_table(self.rows()), "",
                 f"predicted total: {self.total_ms:.3f} ms "
                 f"({_describe(self.settings)})",
                 "whole model: " + (
                     "not calibrated (whole_model=False)"
                     if self.measured_ms is None else
                     f"measured {self.measured_ms:.3f} ms, of which "
                     f"{self.unexplained_ms:.3f} ms not explained by the "
                     "layers alone, spread per output channel"),
                 f"samples: {self.num_measured} measured, {self.num_cached} "
                 f"cached, built in {self.build_seconds:.1f} s"]
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
                    layer_object, kernel):
                return curve
            return _no_cost
        per_element = float(flops_per_element) * self.ms_per_flop
        return lambda dims: math.prod(dims) * per_element

    def price(self, layer_cost, kept=None):
        """Predicted ms of one `stats.LayerCost` with its weights cut to
        `kept` (`{weight key: kept shape}`), the latency entry of the
        callback's cost model (`stats.price(..., prices={"latency":
        table.price})`): the sum of `weight_price` over its weights."""
        return float(sum(
            self.weight_price(layer_cost.name, layer_cost.layer, weight.key,
                              weight.flops)(shape)
            for weight, shape in layer_cost.kept_shapes(kept)))

    def check_model(self, model, shapes=None):
        """Raises a `ValueError` unless the table was built for `model`."""
        expected = {name: _fingerprint(entry) for name, entry in
                    _price_layers(model, shapes, 1.0, None).items()}
        actual = {name: _fingerprint(entry)
                  for name, entry in self.layers.items()}
        for name in list(expected) + list(actual):
            if expected.get(name) == actual.get(name):
                continue
            what = ("has no entry" if name not in actual else
                    f"has {actual[name]}")
            raise ValueError(
                f"`latency_table` does not match model '{model.name}': it "
                f"was built for model '{self.model_name}'. For layer "
                f"'{name}' the model has {expected.get(name, 'no layer')} "
                f"but the table {what}. {_BUILD_HINT}"
            )


def build_latency_table(model, quantization=None, num_threads=1,
                        num_samples=4, num_runs=20, statistic="min",
                        cache_dir=None, verbose=1, whole_model=True):
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
    settings = _check_settings(quantization, num_threads, num_samples,
                               num_runs, statistic)
    start = time.perf_counter()
    signatures = {}
    for entry in _price_layers(model, None, 1.0, None).values():
        for signature in entry.grids:
            signatures[_key(signature)] = signature
    path = _cache.cache_path(cache_dir, _key(settings))
    cache = _cache.read(path, _FORMAT)
    missing = [k for k in signatures if k not in cache]
    if _OVERHEAD not in cache:
        missing.append(_OVERHEAD)
        signatures[_OVERHEAD] = _OVERHEAD_SIGNATURE
    per_signature = {k: _sample_grid(signatures[k], num_samples)
                     if k != _OVERHEAD else ([1], [1]) for k in missing}
    total = sum(len(i) * len(o) for i, o in per_signature.values())
    if total:
        _measure.check_runtime()  # a cached table needs neither
    progress = keras.utils.Progbar(total, unit_name="sample") if (
        verbose and total) else None
    for key in missing:
        ins, outs = per_signature[key]
        ms = [[_time(signatures[key], cin, cout, settings, progress)
               for cout in outs] for cin in ins]
        cache[key] = {"signature": signatures[key], "inputs": ins,
                      "outputs": outs, "ms": ms}
        if path:
            _cache.write(path, _FORMAT, settings, cache)
    num_cached = sum(
        len(cache[k]["inputs"]) * len(cache[k]["outputs"])
        for k in signatures if k not in per_signature and k != _OVERHEAD)
    total -= int(_OVERHEAD in per_signature)
    table_layers = _price_layers(model, None, None, cache)
    measured_ms, unexplained = None, 0.0
    if whole_model:
        measured_ms = _whole_model_ms(model, settings, signatures, cache,
                                      path)
    if measured_ms is not None:
        table_layers, unexplained = _calibrate(table_layers, measured_ms)
    return LatencyTable(
        model.name, settings, table_layers,
        _ms_per_flop(table_layers), total, num_cached,
        time.perf_counter() - start, measured_ms, unexplained,
    )


def _whole_model_ms(model, settings, signatures, cache, path):
    """The whole model's measured ms, cached under the model's layer
    signatures; `None` (with a warning) where it does not convert."""
    key = "model:" + _key({"name": model.name,
                           "layers": sorted(k for k in signatures
                                            if k != _OVERHEAD)})
    if key not in cache:
        _measure.check_runtime()
        try:
            ms = float(_measure.time_model(model, settings))
        except (ValueError, RuntimeError) as error:
            warnings.warn(
                f"The whole model '{model.name}' could not be timed "
                f"({type(error).__name__}: {str(error)[:200]}); the latency "
                "table prices its layers alone, so a latency target is a "
                "share of their time, not of the model's.", stacklevel=3)
            return None
        cache[key] = {"ms": ms}
        if path:
            _cache.write(path, _FORMAT, settings, cache)
    return float(cache[key]["ms"])


def _calibrate(entries, measured_ms):
    """Spreads what the priced layers leave unexplained of `measured_ms`
    over the measured layers, per output channel in proportion to the
    positions each writes; returns the entries and the spread ms."""
    priced = sum(entry.predict() for entry in entries.values())
    measured = [e for e in entries.values() if e.kind == "measured"]
    written = sum(e.positions * e.written() for e in measured)
    unexplained = max(measured_ms - priced, 0.0)
    if not written or not unexplained:
        return entries, 0.0
    per_value = unexplained / written
    return {name: dataclasses.replace(
        entry, ms_per_channel=per_value * entry.positions)
        if entry.kind == "measured" else entry
        for name, entry in entries.items()}, unexplained


def measure_latency(model, quantization=None, num_threads=1, num_runs=50,
                    statistic="min", representative_data=None):
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
    settings = _check_settings(quantization, num_threads, 2, num_runs,
                               statistic)
    _measure.check_runtime()
    return _measure.time_model(model, settings, representative_data)


# ----------------------------------------------------------- validation
def _check_is_table(table):
    """Raises unless `table` is a `LatencyTable` (prune_model and the
    callback)."""
    if not isinstance(table, LatencyTable):
        raise ValueError(
            "`latency_table` must be a keras_guided.latency.LatencyTable. "
            f"Received: {type(table).__name__}. " + _BUILD_HINT
        )


def _check_settings(quantization, num_threads, num_samples, num_runs,
                    statistic):
    quantization = export_lib._check_quantization(quantization)
    for name, value, low in (("num_threads", num_threads, 1),
                             ("num_samples", num_samples, 2),
                             ("num_runs", num_runs, 1)):
        if isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < low:
            raise ValueError(
                f"`{name}` must be an int >= {low}. "
                f"Received: {name}={value!r}"
            )
    if statistic not in STATISTICS:
        raise ValueError(
            f"`statistic` must be one of {list(STATISTICS)}. "
            f"Received: statistic={statistic!r}"
        )
    return {
        "quantization": quantization or "float32",
        "num_threads": int(num_threads),
        "num_samples": int(num_samples),
        "num_runs": int(num_runs),
        "statistic": statistic,
        "runtime": _runtime(),
    }


def _runtime():
    """Versions and hardware that change a timing."""
    import importlib.metadata as metadata

    versions = {}
    for package in ("ai-edge-litert", "tensorflow", "keras"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["machine"] = platform.machine()
    versions["cpu"] = _cache.cpu_name()
    return versions


def _describe(settings):
    return (f"{settings['quantization']}, {settings['num_threads']} "
            f"thread(s), {settings['statistic']} of {settings['num_runs']} "
            "runs")


# ------------------------------------------------------------- signatures
def _kind(layer):
    """`"conv"`, `"depthwise"`, `"dense"` or `None` (not measured): the
    `latency` of the layer's rule (`keras_guided.rules`), for channels-last
    layers without groups."""
    rule = rules.rule_for(layer)
    if rule is None or rule.latency is None:
        return None
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last":
        return None
    if config.get("groups", 1) != 1:
        return None
    return rule.latency


def _signature(layer, input_shape):
    """What a layer's timing depends on, as plain JSON values."""
    config = layer.get_config()
    timing = {k: config[k] for k in _TIMING_KEYS if k in config}
    activation = timing.get("activation")
    if activation is not None and not isinstance(activation, str):
        timing["activation"] = "linear"  # a custom one: timed without it
    kind = _kind(layer)
    output = (layer.filters if kind == "conv" else layer.units
              if kind == "dense" else int(input_shape[-1]))
    # Timed as the class its rule is registered for: a subclass of Dense is
    # timed (and cached) as a Dense with its config.
    return {"class": rules.ruled_class(layer).__name__, "kind": kind,
            "config": json.loads(json.dumps(timing)),
            "spatial": [int(d) for d in input_shape[1:-1]],
            "inputs": int(input_shape[-1]), "outputs": int(output)}


def _key(signature):
    text = json.dumps(signature, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _sample_counts(full, num_samples):
    """`num_samples` counts up to `full`: quarters (for 4) rounded to a
    multiple of 8 (of 4 below 64 channels), and `full` itself."""
    if full < 8:
        return [int(full)]
    step = 8 if full >= 64 else 4
    counts = {int(full)}
    for i in range(1, num_samples):
        count = round(full * i / num_samples / step) * step
        counts.add(int(min(max(count, step), full)))
    return sorted(counts)


def _sample_grid(signature, num_samples):
    ins = _sample_counts(signature["inputs"], num_samples)
    outs = ([signature["outputs"]] if signature["kind"] == "depthwise"
            else _sample_counts(signature["outputs"], num_samples))
    return ins, outs


def _time(signature, cin, cout, settings, progress):
    kwargs = dict(signature["config"])
    layer_class = rules.timed_class(signature["class"])
    if signature["kind"] == "conv":
        kwargs["filters"] = int(cout)
    elif signature["kind"] == "dense":
        kwargs["units"] = int(cout)
    shape = tuple(signature["spatial"]) + (int(cin),)
    ms = float(_measure.time_layer(layer_class, kwargs, shape,
                                           settings))
    if progress is not None:
        progress.add(1)
    return ms


def _price_layers(model, shapes, ms_per_flop, cache):
    """`{name: LayerLatency}` for every layer with FLOPs.

    With `cache=None` the grids hold signatures (what to measure); with a
    cache, the measured grids. `ms_per_flop=None` derives it from the
    measured layers.
    """
    rows = {name: weights for name, _, weights in
            stats.weight_costs(model, shapes=shapes)}
    entries = {}
    for name, layer, calls in iter_layers(model, shapes=shapes):
        flops = float(sum(math.prod(shape) * per for shape, per in
                          rows[name].values()))
        if flops <= 0:
            continue
        kind = _kind(layer) if calls else None
        if kind is None:
            entries[name] = LayerLatency(name, type(layer).__name__,
                                         "estimated", flops=flops)
            continue
        grids = []
        for input_shape, _ in calls:
            signature = _signature(layer, input_shape)
            if cache is None:
                grids.append(signature)
                continue
            found = cache[_key(signature)]
            overhead = cache[_OVERHEAD]["ms"][0][0]
            grids.append((tuple(found["inputs"]), tuple(found["outputs"]),
                          _monotone(np.asarray(found["ms"]) - overhead)))
        first = _signature(layer, calls[0][0])
        positions = float(sum(math.prod(tuple(out)[1:-1] or (1,))
                              for _, out in calls))
        entries[name] = LayerLatency(
            name, type(layer).__name__, "measured", first["inputs"],
            first["outputs"], tuple(grids), flops=flops,
            positions=positions)
    if ms_per_flop is None:
        ms_per_flop = _ms_per_flop(entries)
    return {name: dataclasses.replace(entry, ms_per_flop=ms_per_flop)
            for name, entry in entries.items()}


def _ms_per_flop(entries):
    measured = [e for e in entries.values() if e.kind == "measured"]
    flops = sum(e.flops for e in measured)
    return sum(e.predict() for e in measured) / flops if flops else 0.0


def _fingerprint(entry):
    """How a layer is priced, for matching a table with a model."""
    if entry.kind == "estimated":
        return f"{entry.class_name} (estimated, {entry.flops:.0f} FLOPs)"
    return (f"{entry.class_name} with {entry.input_channels} input and "
            f"{entry.output_channels} output channels")


# ---------------------------------------------------------- interpolation
def _no_cost(dims):
    return 0.0


def _monotone(ms):
    """The grid made non-negative and non-decreasing along both counts."""
    grid = np.maximum(np.asarray(ms, dtype="float64"), 0.0)
    grid = np.maximum.accumulate(grid, axis=0)
    grid = np.maximum.accumulate(grid, axis=1)
    return tuple(tuple(float(v) for v in row) for row in grid)


def _interpolate(x, xs, ys):
    """Piecewise-linear `ys(x)`; below `xs[0]` along the first segment
    (proportional to `x` with one sample), above `xs[-1]` clamped."""
    xs = [float(v) for v in xs]
    if len(xs) == 1:
        return float(ys[0]) * float(x) / xs[0]
    if x >= xs[-1]:
        return float(ys[-1])
    segment = max(0, int(np.searchsorted(xs, x, side="right")) - 1)
    segment = min(segment, len(xs) - 2)
    x0, x1 = xs[segment], xs[segment + 1]
    y0, y1 = float(ys[segment]), float(ys[segment + 1])
    return max(y0 + (y1 - y0) * (float(x) - x0) / (x1 - x0), 0.0)


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
