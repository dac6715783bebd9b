"""`build_latency_table` (measure what the cache lacks, calibrate on the
whole model) and `measure_latency` (one whole-model timing)."""

import time

from keras_guided.latency import _cache
from keras_guided.latency import _calibration
from keras_guided.latency import _measure
from keras_guided.latency import _sampling
from keras_guided.latency import _settings
from keras_guided.latency import _signatures
from keras_guided.latency._pricing import price_layers
from keras_guided.latency._settings import STATISTICS as STATISTICS
from keras_guided.latency._table import LatencyTable


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
    for entry in price_layers(model, None, 1.0, None).values():
        for signature in entry.grids:
            signatures[_signatures.cache_key(signature)] = signature
    path = _cache.cache_path(cache_dir, _signatures.cache_key(settings))
    cache = _cache.read(path, _cache.FORMAT)
    total, num_cached = _sampling.measure_missing(
        signatures, cache, path, settings, num_samples, verbose
    )
    table_layers = price_layers(model, None, None, cache)
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
