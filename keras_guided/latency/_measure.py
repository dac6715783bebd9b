"""Timing one layer, or one model, in the LiteRT interpreter.

A whole model (`time_model`, `model_runner`: the table's calibration and
the closed latency loop) is timed on `export.tflite_content`: the bytes
`export_tflite` writes for the same quantization, so what is timed is
what ships (a float32 request is a float32 file, never a dynamic-range
one).

`latency.build_latency_table` calls `time_layer` once per sampled channel
count: the layer alone, at its input shape, is traced with `tf.function`,
converted with `tf.lite.TFLiteConverter.from_concrete_functions` (no
SavedModel on disk, about 0.2 s a layer) under the exact converter settings
`export_tflite` uses (`export.converter_settings`), and timed with
`export.median_latency`. The function is converted without its
`trackable_obj` on purpose: that path freezes the layer's variables into
constants, as the SavedModel path of `export_tflite` does; with the
trackable the file would read resource variables at run time, which
XNNPACK cannot fuse, and time 3-4x slower than the exported model. Tests
replace `time_layer` to count calls or return synthetic timings.
"""

import contextlib
import logging
import time

import numpy as np

from keras_guided import export

_CALIBRATION_SAMPLES = 4


def check_runtime():
    """Raises unless this process can convert (TensorFlow backend) and run
    (`ai_edge_litert`) a LiteRT file."""
    export.check_backend()
    export.import_interpreter()


def time_layer(layer_class, kwargs, input_shape, settings):
    """Latency in ms of a fresh `layer_class(**kwargs)` on one input of
    `input_shape` (batch excluded), under `settings` (a dict with
    `quantization`, `num_threads`, `num_runs`, `statistic`)."""

    content = layer_content(
        layer_class, kwargs, input_shape, settings["quantization"]
    )
    return export.median_latency(
        export.import_interpreter(),
        content,
        settings["num_runs"],
        settings["num_threads"],
        settings["statistic"],
    )


def layer_content(layer_class, kwargs, input_shape, quantization):
    """The `.tflite` bytes `time_layer` times: a fresh
    `layer_class(**kwargs)` at `(1,) + input_shape`, converted under
    `export.converter_settings(quantization)`."""
    import tensorflow as tf

    layer = layer_class(**kwargs)
    spec = tf.TensorSpec((1,) + tuple(input_shape), tf.float32)
    layer.build(spec.shape)
    function = tf.function(lambda x: layer(x), input_signature=[spec])
    with _quiet_deprecation():
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [function.get_concrete_function()]
        )
    return _convert(converter, input_shape, quantization)


def time_model(model, settings, representative_data=None):
    """Latency in ms of the whole single-input `model`, converted as
    `export_tflite` converts it (batch 1, built-in ops only)."""
    content = _model_content(
        model, settings["quantization"], representative_data
    )
    return export.median_latency(
        export.import_interpreter(),
        content,
        settings["num_runs"],
        settings["num_threads"],
        settings["statistic"],
    )


def model_runner(
    model,
    quantization,
    num_threads,
    num_runs,
    representative_data=None,
    clock="wall",
):
    """`run` for `model` (converted as `time_model` converts it, with an
    allocated interpreter and a warm-up): `run()` returns the min ms over
    `num_runs` invokes, on the wall clock (`clock="wall"`) or as the
    calling thread's CPU time (`"cpu"`, `time.thread_time`: with one
    interpreter thread the invoke runs on the caller, and the time it was
    descheduled by other processes is left out). What
    `latency.InterleavedTimer` times by default."""
    now = time.thread_time if clock == "cpu" else time.perf_counter
    content = _model_content(model, quantization, representative_data)
    interpreter = export.make_interpreter(
        export.import_interpreter(), content, num_threads
    )
    detail = interpreter.get_input_details()[0]
    if int(detail["shape_signature"][0]) < 0:
        shape = (1,) + tuple(int(d) for d in detail["shape"][1:])
        interpreter.resize_tensor_input(detail["index"], shape)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(
        detail["index"], np.zeros(tuple(detail["shape"]), dtype=detail["dtype"])
    )
    for _ in range(min(5, num_runs)):  # Warm-up.
        interpreter.invoke()

    def run():
        times = []
        for _ in range(num_runs):
            start = now()
            interpreter.invoke()
            times.append(now() - start)
        return float(min(times) * 1000.0)

    return run


def _model_content(model, quantization, representative_data):
    """The `.tflite` bytes `export_tflite` writes for `model` (batch 1),
    calibrated on random inputs for `"int8"` without data."""
    quantization = export.check_quantization(quantization)
    if quantization == "int8" and representative_data is None:
        input_shape, _ = export.single_input(model)
        representative_data = _calibration(input_shape)
    return export.tflite_content(
        model, quantization, representative_data, batch_size=1
    )


def _convert(converter, input_shape, quantization):
    quantization = export.check_quantization(quantization)
    data = _calibration(input_shape) if quantization == "int8" else None
    export.apply_settings(
        converter, export.converter_settings(quantization, data)
    )
    return converter.convert()


class _TrackableWarning(logging.Filter):
    def filter(self, record):
        return "trackable_obj" not in record.getMessage()


@contextlib.contextmanager
def _quiet_deprecation():
    """Hides TF's one-line advice to pass `trackable_obj` (see module doc)."""
    logger = logging.getLogger("absl")
    quiet = _TrackableWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _calibration(input_shape):
    """Random calibration inputs: int8 timings do not depend on values."""
    rng = np.random.default_rng(0)
    shape = (_CALIBRATION_SAMPLES,) + tuple(input_shape)
    return rng.standard_normal(shape).astype("float32")
