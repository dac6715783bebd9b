"""The arguments of `export_tflite` checked, and the model's inputs read.

Everything here runs before any conversion, so a bad argument fails fast
with a message that names it: the backend (TensorFlow only), the target
path, the quantization mode, the numeric options, the model's input or
inputs (one input keeps the array path; several, or several outputs, go
through `_inputs.ModelInputs`), and the user's `representative_data` and
`sample_inputs`, checked against those inputs.
"""

import os

import keras
import numpy as np

from keras_guided import validation
from keras_guided.export import _input_data
from keras_guided.export import _inputs

QUANTIZATIONS = (None, "dynamic", "float16", "int8")


def check_backend():
    """Raises a `RuntimeError` unless Keras runs on the TensorFlow backend
    (the TFLite converter is TensorFlow's)."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            "keras_guided.export_tflite needs the TensorFlow backend (the "
            f"TFLite converter is TensorFlow's). Received backend "
            f"'{backend}'. Save the model with model.save('model.keras') and "
            "export it from a TensorFlow-backend process: KERAS_BACKEND="
            "tensorflow keras-guided export model.keras -o model.tflite"
        )


def check_filepath(filepath):
    if not isinstance(filepath, (str, os.PathLike)):
        raise ValueError(
            "`filepath` must be a path ending in '.tflite'. "
            f"Received: filepath={filepath!r}"
        )
    filepath = os.path.abspath(os.fspath(filepath))
    if not filepath.endswith(".tflite"):
        raise ValueError(
            f"`filepath` must end in '.tflite'. Received: filepath='{filepath}'"
        )
    directory = os.path.dirname(filepath)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"The output directory '{directory}' does not exist. Create it "
            "first or choose another output path."
        )
    if os.path.isdir(filepath):
        raise ValueError(
            f"`filepath` '{filepath}' is a directory. Pass a file path "
            "ending in '.tflite'."
        )
    return filepath


def check_quantization(quantization):
    """The quantization mode, checked: one of `QUANTIZATIONS` (`"float32"`
    reads as `None`), else a `ValueError`."""
    if quantization == "float32":
        return None
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            "`quantization` must be one of None, 'dynamic', 'float16', "
            f"'int8'. Received: quantization={quantization!r}"
        )
    return quantization


def check_options(
    quantization, int8_io, num_runs, num_threads, batch_size, tolerance
):
    """Raises unless `int8_io`, `num_runs`, `num_threads`, `batch_size` and
    `tolerance` fit (`quantization` already checked)."""
    if int8_io and quantization != "int8":
        raise ValueError(
            "`int8_io=True` needs `quantization='int8'` (only a full-integer "
            f"model has int8 inputs and outputs). Received: "
            f"quantization={quantization!r}."
        )
    for name, value in (("num_runs", num_runs), ("num_threads", num_threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"`{name}` must be a positive int. Received: {name}={value!r}"
            )
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(
            "`batch_size` must be a positive int or None (dynamic). "
            f"Received: batch_size={batch_size!r}"
        )
    if tolerance is not None and (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float, np.integer, np.floating))
        or not tolerance >= 0
    ):
        raise ValueError(
            "`tolerance` must be a non-negative float or None. "
            f"Received: tolerance={tolerance!r}"
        )


def _defined_inputs(model):
    try:
        return model.inputs
    except (AttributeError, ValueError):
        return None


def with_inputs(model, input_shape):
    """`model`, or `model` called on `keras.Input(input_shape)`."""
    if input_shape is None:
        return model
    if isinstance(input_shape, int) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
        for d in tuple(input_shape)
    ):
        raise ValueError(
            "`input_shape` must be a tuple of positive ints (the input shape "
            f"without the batch). Received: input_shape={input_shape!r}"
        )
    input_shape = tuple(int(d) for d in input_shape)
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so it has no weights to "
            "export. Train it, or call it on data, first."
        )
    inputs = _defined_inputs(model)
    if inputs:
        if len(inputs) == 1 and tuple(inputs[0].shape[1:]) == input_shape:
            return model
        raise ValueError(
            f"`input_shape` is for a model without defined inputs; model "
            f"'{model.name}' has inputs of shapes "
            f"{[tuple(t.shape) for t in inputs]}. Received: "
            f"input_shape={input_shape}. Leave `input_shape` out."
        )
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, model(inputs), name=model.name)


def read_inputs(model, input_shapes=None, sequence_length=None, data=()):
    """`(model_inputs, input_shape, input_dtype)` of the model to export.

    `model_inputs` is a `_inputs.ModelInputs` for a model with several
    inputs (then `input_shape` and `input_dtype` are `None`) or several
    outputs, else `None`; `input_shape` (without the batch) and
    `input_dtype` describe a one-input model. A `None` size neither
    `input_shapes` nor `sequence_length` fills is read off `data` (the
    user's `representative_data` and `sample_inputs`, the first given).
    """
    if _defined_inputs(model):
        input_shapes = _inputs.shapes_from_data(
            model, input_shapes, sequence_length, data
        )
    # Several inputs (a dict or a list) take the named path of
    # `_inputs`; a one-input model keeps its array path.
    model_inputs = None
    if _inputs.several_inputs(model):
        model_inputs = _inputs.read(model, input_shapes, sequence_length)
        input_shape = input_dtype = None
    else:
        input_shape, input_dtype = single_input(
            model, input_shapes, sequence_length
        )
        if _inputs.several_outputs(model):
            model_inputs = _inputs.read(
                model, {model.inputs[0].name: input_shape}
            )
    return model_inputs, input_shape, input_dtype


def single_input(model, input_shapes=None, sequence_length=None):
    """`(input shape without the batch, dtype)` of a one-input model, its
    unknown sizes filled from `input_shapes` or `sequence_length`; a
    `ValueError` for a model without defined inputs or with several."""
    validation.check_model(model)
    inputs = _defined_inputs(model)
    if not inputs:
        kind = (
            "a subclassed model"
            if not isinstance(model, keras.Sequential)
            else "a Sequential model without an input shape"
        )
        raise ValueError(
            f"Model '{model.name}' has no defined inputs ({kind}), so the "
            "shape of the file's input is unknown. Pass it: "
            "`keras_guided.export_tflite(model, path, input_shape=(...))`, "
            "or export a Functional model around it: `inputs = "
            "keras.Input(shape); keras_guided.export_tflite(keras.Model("
            "inputs, model(inputs)), path)`."
        )
    if len(inputs) != 1:
        raise ValueError(
            "keras_guided.export_tflite supports single-input models. "
            f"Received: model '{model.name}' with {len(inputs)} inputs. Use "
            "model.export(path, format='litert') for multi-input models."
        )
    _inputs.check_sequence_length(sequence_length)
    overrides = _inputs.check_input_shapes(
        model, input_shapes, [inputs[0].name]
    )
    shape = _inputs.resolve_shape(
        model.name,
        inputs[0].name,
        tuple(inputs[0].shape[1:]),
        overrides.get(inputs[0].name),
        sequence_length,
    )
    return shape, inputs[0].dtype


def check_calibration(
    quantization, representative_data, model_inputs, input_shape
):
    """Raises for `"int8"` without `representative_data`, naming the
    shapes the data must have."""
    if quantization == "int8" and representative_data is None:
        if input_shape is None:
            shapes = "a dict {" + model_inputs.describe() + "}"
        else:
            shapes = f"inputs of shape (num_samples,) + {input_shape}"
        raise ValueError(
            "`quantization='int8'` needs `representative_data`: typical "
            f"{shapes} to calibrate "
            "the int8 ranges. Received: representative_data=None. Pass e.g. "
            "representative_data=x_train[:256], or use "
            "quantization='dynamic', which needs no data."
        )


_check_inputs = _input_data.check_array


def check_data(
    model_inputs, input_shape, input_dtype, representative_data, sample_inputs
):
    """`representative_data` and `sample_inputs` checked: arrays for a
    one-input model, `{name: array}` dicts for one with several inputs."""
    checked = []
    for name, data in (
        ("representative_data", representative_data),
        ("sample_inputs", sample_inputs),
    ):
        if data is None:
            checked.append(None)
        elif input_shape is None:
            checked.append(_input_data.check_data(model_inputs, data, name))
        else:
            checked.append(_check_inputs(data, input_shape, name, input_dtype))
    return checked
