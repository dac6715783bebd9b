"""The TFLite converter's settings and run; importable and runnable.

`converter_settings` turns a quantization mode into the converter's
settings (built-in ops only), shared by `export_tflite` and the latency
tables (`"float32"` is `None`: no optimization, so a float32 request is
never converted to a dynamic-range model); `convert_saved_model` converts
a SavedModel written as `model.export(format="litert")` writes it, with
the same converter set-up.

`_conversion` runs this module as a script in a child process for the
conversions that calibrate (`"int8"`): `python _converter.py saved_model
request.json out.tflite`. The int8 calibrator runs the model's graph on
the calibration data inside the converter, and on some graphs
(ConvLSTM2D's loop) it crashes the process with a segmentation fault; in a
child that crash ends the child only. The module imports only NumPy and,
when converting, TensorFlow (no Keras), so the child starts as fast as
TensorFlow imports.
"""

import json
import sys

import numpy as np

QUANTIZATION_NAMES = (None, "float32", "dynamic", "float16", "int8")


def converter_settings(quantization, representative_data=None, int8_io=False):
    """The TFLite converter settings of a quantization mode.

    `quantization` is `None` or `"float32"` (no optimization: float32
    weights and activations), `"dynamic"`, `"float16"` or `"int8"`.
    Returns `(target_spec, options)`: `target_spec` a dict of
    `converter.target_spec` attributes (built-in ops only), `options` a dict
    of converter attributes, in the form `model.export(format="litert",
    target_spec=..., **options)` takes. `apply_settings` sets them on a
    `tf.lite.TFLiteConverter`, so every conversion (`export_tflite`, the
    latency tables) uses the same settings.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATION_NAMES:
        raise ValueError(
            "`quantization` must be one of None, 'float32', 'dynamic', "
            f"'float16', 'int8'. Received: quantization={quantization!r}"
        )
    ops = {tf.lite.OpsSet.TFLITE_BUILTINS}
    options = {}
    target_spec = {}
    if quantization in ("dynamic", "float16", "int8"):
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        target_spec["supported_types"] = [tf.float16]
    if quantization == "int8":
        ops.add(tf.lite.OpsSet.TFLITE_BUILTINS_INT8)
        data = representative_data

        def representative_dataset():
            if isinstance(data, dict):  # Several inputs, by signature name.
                count = next(iter(data.values())).shape[0]
                for row in range(count):
                    yield {
                        name: array[row : row + 1]
                        for name, array in data.items()
                    }
                return
            for row in range(data.shape[0]):
                yield [data[row : row + 1]]

        options["representative_dataset"] = representative_dataset
        if int8_io:
            options["inference_input_type"] = tf.int8
            options["inference_output_type"] = tf.int8
    target_spec["supported_ops"] = ops
    return target_spec, options


def apply_settings(converter, settings):
    """Sets `converter_settings(...)` on a `tf.lite.TFLiteConverter`."""
    target_spec, options = settings
    for name, value in target_spec.items():
        setattr(converter.target_spec, name, value)
    for name, value in options.items():
        setattr(converter, name, value)
    return converter


def convert_saved_model(directory, quantization, data, int8_io):
    """The `.tflite` bytes of the SavedModel in `directory`, converted as
    `model.export(format="litert")` converts (Keras' `LiteRTExporter`:
    `from_saved_model`, resource variables enabled) with
    `converter_settings(quantization, data, int8_io)`."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(directory)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    converter.experimental_enable_resource_variables = True
    apply_settings(converter, converter_settings(quantization, data, int8_io))
    return converter.convert()


def load_data(path):
    """Calibration data saved by the parent: an array (`.npy`), a dict of
    arrays (`.npz`), or `None` (no path)."""
    if not path:
        return None
    if path.endswith(".npz"):
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    return np.load(path)


def main(argv):
    directory, request_path, output_path = argv[1:4]
    with open(request_path) as f:
        request = json.load(f)
    try:
        content = convert_saved_model(
            directory,
            request["quantization"],
            load_data(request["data"]),
            request["int8_io"],
        )
    except Exception as error:  # The converter raises several error types.
        with open(request["error"], "w") as f:
            f.write(f"{type(error).__name__}: {error}")
        return 1
    with open(output_path, "wb") as f:
        f.write(content)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
