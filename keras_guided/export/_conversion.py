"""Conversion: the TFLite converter's settings, the conversion, its errors.

`converter_settings` turns a quantization mode into the converter's
settings (built-in ops only), shared by `export_tflite` and the latency
tables; `convert` runs `model.export(format="litert")` with them and turns
the converter's failure into a `ValueError` that names the non-built-in
(Flex) ops and the layers using them; `convert_with_fallback` retries once
with a dynamic batch when the converter refuses the asked batch size.
"""

import re

from keras_guided import _walk
from keras_guided.export import _inputs


def converter_settings(quantization, representative_data=None, int8_io=False):
    """The TFLite converter settings of a quantization mode.

    Returns `(target_spec, options)`: `target_spec` a dict of
    `converter.target_spec` attributes (built-in ops only), `options` a dict
    of converter attributes, in the form `model.export(format="litert",
    target_spec=..., **options)` takes. `apply_settings` sets them on a
    `tf.lite.TFLiteConverter`, so every conversion (`export_tflite`, the
    latency tables) uses the same settings.
    """
    import tensorflow as tf

    ops = {tf.lite.OpsSet.TFLITE_BUILTINS}
    options = {}
    target_spec = {}
    if quantization is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        target_spec["supported_types"] = [tf.float16]
    if quantization == "int8":
        ops.add(tf.lite.OpsSet.TFLITE_BUILTINS_INT8)
        data = representative_data

        def representative_dataset():
            if isinstance(data, dict):  # Several inputs, by signature name.
                for row in range(_inputs.num_samples(data)):
                    yield _inputs.take(data, row + 1, row)
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


def convert(
    model,
    path,
    quantization,
    representative_data,
    int8_io,
    input_shape,
    input_dtype,
    batch_size,
    model_inputs=None,
):
    import tensorflow as tf

    target_spec, options = converter_settings(
        quantization, representative_data, int8_io
    )
    if model_inputs is not None and input_shape is None:
        signature = model_inputs.signature(batch_size)
    else:
        signature = [
            tf.TensorSpec((batch_size,) + tuple(input_shape), input_dtype)
        ]
    try:
        model.export(
            path,
            format="litert",
            verbose=False,
            input_signature=signature,
            target_spec=target_spec,
            **options,
        )
    except Exception as error:  # The converter raises several error types.
        raise _conversion_error(model, error) from error


def _converter_reason(error):
    """The converter's own words: the text after its last 'error: '."""
    message = str(error.__cause__ or error)
    found = re.findall(r"error: ([^\n]+)", message)
    reason = found[-1] if found else message.strip().splitlines()[0]
    return reason.strip()[:300]


def _conversion_error(model, error):
    message = str(error)
    ops = sorted(
        set(re.findall(r"'tf\.(\w+)' op is neither a custom op", message))
    )
    if not ops:
        first = message.strip().splitlines()[0] if message.strip() else ""
        return ValueError(
            f"TFLite conversion of model '{model.name}' failed: "
            f"{type(error).__name__}: {first}"
        )
    layers = _layers_in_locations(model, message, ops)
    where = ""
    if layers:
        where = " (used by " + ", ".join(layers) + ")"
    return ValueError(
        f"Model '{model.name}' needs TensorFlow ops that are not TFLite "
        f"built-ins: {', '.join(ops)}{where}. keras_guided exports built-in "
        "ops only, so the file runs on the stock LiteRT runtime without the "
        "Flex delegate. Replace the layer with one made of supported ops, "
        "or export with model.export(path, format='litert'), which allows "
        "Flex ops."
    )


def _layers_in_locations(model, message, ops):
    """Best-effort names of the layers whose name scopes hold the ops."""
    by_name = {layer.name: layer for layer in _walk.all_layers(model)}
    found = []
    for op in ops:
        for location in re.findall(r'"(?:\w+):", "([^"@]*)/' + op, message):
            for part in location.split("/"):
                candidates = [part, re.sub(r"_\d+$", "", part)]
                match = next((c for c in candidates if c in by_name), None)
                if match and match != model.name:
                    label = f"layer '{match}' ({type(by_name[match]).__name__})"
                    if label not in found:
                        found.append(label)
    return found


def convert_with_fallback(
    model,
    path,
    quantization,
    representative_data,
    int8_io,
    input_shape,
    input_dtype,
    batch_size,
    model_inputs,
):
    """Converts `model` to `path`; `(batch_size, notes)`.

    `batch_size` is the batch the file has: the asked one, or `None` (a
    dynamic batch) after the converter refused it, which `notes` then says.
    A model that needs non-built-in ops is not retried.
    """
    notes = []
    try:
        convert(
            model,
            path,
            quantization,
            representative_data,
            int8_io,
            input_shape,
            input_dtype,
            batch_size,
            model_inputs,
        )
    except ValueError as error:
        if batch_size is None or "neither a custom op" in str(
            error.__cause__ or ""
        ):
            raise
        # Some graphs (attention's reshapes and transposes) convert only
        # with a dynamic batch: retry once and say so.
        try:
            convert(
                model,
                path,
                quantization,
                representative_data,
                int8_io,
                input_shape,
                input_dtype,
                None,
                model_inputs,
            )
        except ValueError:
            raise ValueError(
                f"{error} It also failed with batch_size=None (a "
                "dynamic batch). Check the model for layers the TFLite "
                "converter does not support."
            ) from error
        notes.append(
            f"conversion with batch_size={batch_size} failed "
            f"({_converter_reason(error)}); the file has a dynamic batch "
            "(batch_size=None) instead"
        )
        batch_size = None
    return batch_size, notes
