"""Conversion: the conversion of a model and its errors.

`convert` runs `model.export(format="litert")` with the settings of
`_converter.converter_settings` (built-in ops only) and turns the
converter's failure into a `ValueError` that names the non-built-in (Flex)
ops and the layers using them; `convert_with_fallback` retries once with a
dynamic batch when the converter refuses the asked batch size.

A conversion that calibrates (`"int8"`) runs the converter in a child
process (`_converter` as a script, on the SavedModel Keras' LiteRT
exporter would write): the calibrator runs the model's graph inside the
converter, and on some graphs (ConvLSTM2D) it crashes with a segmentation
fault. The crash then ends the child, and becomes a `ValueError` here
naming the model, the quantization and the fix. The other modes do not
run the model and convert in this process, as `model.export` does: a
child costs a TensorFlow import (seconds).
"""

import functools
import json
import os
import re
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_guided import graph as graph_lib
from keras_guided.export import _converter
from keras_guided.export._converter import converter_settings
from keras_guided.export._litert_run import describe_exit

_CHILD_TIMEOUT = 3600


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
    if quantization == "int8":
        _convert_in_child(model, path, signature, representative_data, int8_io)
        return
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


class ConverterCrash(Exception):
    """The child converting a model ended on a signal (a crash)."""


class _ChildError(Exception):
    """The converter's error in the child, as text."""


def _convert_in_child(model, path, signature, data, int8_io):
    """`model` converted to int8 in a child process, written to `path`.

    The SavedModel is written here as Keras' `LiteRTExporter` writes it
    (an `ExportArchive` with a `serve` endpoint calling the model with
    `training=False`), and the child converts it with the same settings,
    so the bytes are those of `model.export(format="litert")`.
    """
    with tempfile.TemporaryDirectory() as directory:
        saved_model = os.path.join(directory, "saved_model")
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            functools.partial(model.__call__, training=False),
            input_signature=signature,
        )
        archive.write_out(saved_model, verbose=False)
        data_path = None
        if isinstance(data, dict):
            data_path = os.path.join(directory, "data.npz")
            np.savez(data_path, **data)
        elif data is not None:
            data_path = os.path.join(directory, "data.npy")
            np.save(data_path, data)
        request = os.path.join(directory, "request.json")
        error_path = os.path.join(directory, "error.txt")
        with open(request, "w") as f:
            json.dump(
                {
                    "quantization": "int8",
                    "int8_io": bool(int8_io),
                    "data": data_path,
                    "error": error_path,
                },
                f,
            )
        output = os.path.join(directory, "model.tflite")
        command = [sys.executable, _converter.__file__, saved_model]
        try:
            result = subprocess.run(
                command + [request, output],
                capture_output=True,
                text=True,
                timeout=_CHILD_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise ValueError(
                f"Converting model '{model.name}' with quantization='int8' "
                f"took more than {_CHILD_TIMEOUT} s and was stopped; no file "
                "was written. Pass fewer `representative_data` samples, or "
                "use quantization='dynamic', which needs no calibration."
            ) from None
        if result.returncode == 0:
            with open(output, "rb") as f:
                content = f.read()
            with open(path, "wb") as f:
                f.write(content)
            return
        if result.returncode > 0 and os.path.exists(error_path):
            with open(error_path) as f:
                error = _ChildError(f.read())
            raise _conversion_error(model, error) from error
    raise _crash_error(model, result)


def _crash_error(model, result):
    """The `ValueError` of a child converter that crashed (or failed
    without saying why), naming the model, its recurrent layers (the
    graphs the calibrator is known to crash on) and the fix."""
    cause = describe_exit(result.returncode)
    suspects = [
        f"layer '{layer.name}' ({type(layer).__name__})"
        for layer in graph_lib.all_layers(model)
        if isinstance(layer, keras.layers.RNN)
    ]
    where = ""
    if suspects:
        where = (
            " The model's recurrent layers are the likely cause (the "
            "calibrator runs their loop): " + ", ".join(suspects[:5]) + "."
        )
    error = ValueError(
        f"TFLite conversion of model '{model.name}' with "
        f"quantization='int8' {cause} while converting or calibrating."
        f"{where} It ran in a child process, so this Python session is "
        "unaffected; no file was written. Export with "
        "quantization='dynamic' (int8 weights, float activations, no "
        "calibration) or quantization=None (float32) instead."
    )
    error.__cause__ = ConverterCrash(result.stderr[-2000:])
    return error


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
    by_name = {layer.name: layer for layer in graph_lib.all_layers(model)}
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
        if (
            batch_size is None
            or isinstance(error.__cause__, ConverterCrash)
            or "neither a custom op" in str(error.__cause__ or "")
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
