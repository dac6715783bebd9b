"""`keras_guided.export`: a verified LiteRT (TFLite) file from a Keras model.

`export_tflite` and its report live here; the parts are private to this
package: `_inputs` (input shapes, sample and calibration data) and
`_litert_run` (the LiteRT interpreter run, also as a child process).

`export_tflite`: a verified LiteRT (TFLite) file from a Keras model.

A thin layer over `model.export(format="litert")` (Keras' LiteRT exporter:
ExportArchive -> SavedModel -> `tf.lite.TFLiteConverter`) that adds what a
deployment needs and the plain call does not give:

* built-in TFLite ops only, so the file runs on the stock LiteRT runtime; a
  model that would need the Flex (TensorFlow ops) runtime fails with an error
  naming the op instead of silently growing a Flex dependency;
* quantization modes by name (`"dynamic"`, `"float16"`, `"int8"`), with the
  int8 calibration data checked up front;
* verification: the written file is run in the LiteRT interpreter
  (`ai_edge_litert`) on sample inputs and compared with Keras; a float32
  export that disagrees (a NaN-emitting conversion, say) is refused;
* an atomic write: a temporary file in the target directory, renamed over
  the target only once conversion and verification succeeded;
* an optional latency measurement (median over interpreter runs).

Export needs the TensorFlow backend (the TFLite converter is TensorFlow's).
Under JAX or PyTorch, save the model as `.keras` and export it from a
TensorFlow-backend process, e.g. `KERAS_BACKEND=tensorflow keras-guided
export model.keras -o model.tflite`.
"""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

from keras_guided import _atomic
from keras_guided import _copies
from keras_guided import _walk
from keras_guided import validation
from keras_guided.export import _inputs
from keras_guided.export import _litert_run

QUANTIZATIONS = (None, "dynamic", "float16", "int8")
FLOAT32_TOLERANCE = 1e-5
_DEFAULT_SAMPLES = 32
_INSTALL_HINT = "pip install keras-guided[tflite]"
_CHILD_TIMEOUT = 600


@dataclasses.dataclass
class ExportReport:
    """What `keras_guided.export_tflite` wrote and how well it matches Keras.

    Attributes:
        path: absolute path of the written `.tflite` file.
        bytes: its size in bytes.
        quantization: `None`, `"dynamic"`, `"float16"` or `"int8"`.
        int8_io: whether the file takes and returns int8 tensors.
        input_shape: the input shape baked into the file (batch included);
            `None` for a model with several inputs (see `input_shapes`).
        input_shapes: `{input name: shape}` of every input baked into the
            file (batch included), keyed as the file's signature is.
        num_samples: inputs used for verification (0 if not verified).
        max_abs_diff: max |LiteRT - Keras| over the outputs of those
            samples (int8 outputs dequantized first); `None` if not verified.
        mean_abs_diff: mean |LiteRT - Keras|; `None` if not verified.
        argmax_agreement: fraction of samples whose argmax over the last
            axis agrees (for outputs with more than one class), else `None`.
        tolerance: the bound `max_abs_diff` was held to, or `None` when the
            error is only measured (quantized modes without a tolerance).
        ok: `True` when verified and within `tolerance` (or, with no
            tolerance, finite); `None` when not verified.
        latency_ms: median wall time of one batch-1 interpreter run on this
            machine, in milliseconds; `None` unless measured.
        num_threads: interpreter threads used for the latency measurement.
        notes: what was done differently from what was asked (a dynamic
            batch after the converter refused `batch_size=1`).

    Examples:
        >>> import keras_guided
        >>> report = keras_guided.ExportReport(path="/tmp/m.tflite", bytes=1200)
        >>> print(report.summary())
        wrote /tmp/m.tflite
          size: 1,200 bytes, quantization: float32, input shape: ()
          verification: skipped
    """

    path: str
    bytes: int
    quantization: object = None
    int8_io: bool = False
    input_shape: tuple = ()
    input_shapes: dict = dataclasses.field(default_factory=dict)
    num_samples: int = 0
    max_abs_diff: object = None
    mean_abs_diff: object = None
    argmax_agreement: object = None
    tolerance: object = None
    ok: object = None
    latency_ms: object = None
    num_threads: int = 1
    notes: list = dataclasses.field(default_factory=list)

    def summary(self):
        """Returns the report as a few human-readable lines."""
        mode = self.quantization or "float32"
        if self.int8_io:
            mode += " (int8 inputs/outputs)"
        if self.input_shape is None:  # Several inputs: name each.
            shape_text = "inputs: " + ", ".join(
                f"{name} {tuple(shape)}"
                for name, shape in self.input_shapes.items()
            )
        else:
            shape_text = f"input shape: {tuple(self.input_shape)}"
        lines = [
            f"wrote {self.path}",
            f"  size: {self.bytes:,} bytes, quantization: {mode}, "
            + shape_text,
        ]
        if self.max_abs_diff is None:
            lines.append("  verification: skipped")
        else:
            bound = (
                f" (tolerance {self.tolerance:.1e})"
                if self.tolerance is not None
                else ""
            )
            line = (
                f"  verification on {self.num_samples} inputs: max |LiteRT - "
                f"Keras| = {self.max_abs_diff:.3g}{bound}, mean "
                f"{self.mean_abs_diff:.3g}"
            )
            if self.argmax_agreement is not None:
                line += f", argmax agreement {self.argmax_agreement:.1%}"
            lines.append(line + (", ok" if self.ok else ", NOT OK"))
        if self.latency_ms is not None:
            lines.append(
                f"  latency: {self.latency_ms:.3g} ms median per run "
                f"({self.num_threads} thread(s), this machine)"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def export_tflite(
    model,
    filepath,
    quantization=None,
    representative_data=None,
    int8_io=False,
    verify=True,
    sample_inputs=None,
    tolerance=None,
    measure_latency=False,
    num_runs=50,
    num_threads=1,
    batch_size=1,
    input_shapes=None,
    sequence_length=None,
    input_shape=None,
):
    """Exports a Keras model to a verified `.tflite` file (built-in ops only).

    Wraps `model.export(format="litert")` with TFLite built-in ops only, a
    named quantization mode, verification in the LiteRT interpreter against
    Keras and an atomic write (temporary file, then rename): a failure never
    leaves a partial file at `filepath` and never replaces an existing one.

    Args:
        model: a built `keras.Model` (Sequential or Functional) with one
            input, or several: a dict of inputs (keras-hub backbones'
            `{"token_ids": ..., "padding_mask": ...}`) or a list (a Siamese
            pair). Integer inputs (token ids) keep their dtype. It is not
            modified.
        filepath: destination path ending in `.tflite`; its directory must
            exist and be writable.
        quantization: `None` (float32), `"dynamic"` (int8 weights, float
            activations), `"float16"` (float16 weights) or `"int8"` (full
            integer, calibrated on `representative_data`). Defaults to
            `None`.
        representative_data: array of typical inputs, shape
            `(num_samples,) + input_shape`, used to calibrate `"int8"` (a few
            hundred samples are enough). For a model with several inputs, a
            dict `{input name: array}` (or, for a model called with a list,
            a list/tuple of arrays in input order), every array with the
            same `num_samples`. Required for `"int8"`. Defaults to `None`.
        int8_io: with `"int8"`, make the file's input and output tensors int8
            too (for integer-only accelerators). Defaults to `False`.
        verify: run the written file in the LiteRT interpreter and compare
            with Keras. Defaults to `True`.
        sample_inputs: inputs for verification, in the same form as
            `representative_data`. Defaults to `None`: the first 32 rows of
            `representative_data` if given, else 32 fixed random valid
            inputs per input: standard-normal floats, token ids in
            `[0, vocabulary)` where an `Embedding` reads the input (else 0
            or 1), 0/1 masks for an input whose name contains "mask".
        tolerance: max allowed |LiteRT - Keras|. Defaults to `None`:
            `1e-5 * max(1, max |Keras output|)` for float32; for quantized
            modes the error is measured and reported, and only a non-finite
            output fails.
        measure_latency: also report the median latency of a batch-1
            interpreter run. Defaults to `False`.
        num_runs: timed runs for the latency median. Defaults to 50.
        num_threads: interpreter threads for the latency measurement.
            Defaults to 1.
        batch_size: batch dimension baked into the file; `None` keeps it
            dynamic. Defaults to 1.
        input_shapes: sizes for input dimensions declared `None` (apart
            from the batch): a dict `{input name: shape without the
            batch}`, e.g. `{"token_ids": (128,)}`, or one shape for a
            one-input model. Defaults to `None`.
        sequence_length: fills a `None` first dimension (after the batch)
            of every input, e.g. `128` for a keras-hub backbone's
            `(None, None)` token ids and padding mask. Defaults to `None`.
        input_shape: the input shape without the batch, for a model without
            defined inputs (a subclassed `keras.Model`): it is exported as
            `keras.Model(inputs, model(inputs))` with `inputs =
            keras.Input(input_shape)`. Defaults to `None` (the model's own
            inputs).

    A model that computes in `mixed_float16` or `mixed_bfloat16` is
    exported as a float32 copy (the TFLite built-in ops compute in float32;
    `"float16"` and the int8 modes quantize from that copy): the file is
    verified against the copy, and `ExportReport.notes` says so, with how
    far the copy is from the mixed-precision model on the sample inputs.

    Returns:
        An `ExportReport` (path, bytes, quantization, max_abs_diff, ok,
        latency_ms, ...).

    Raises:
        ValueError: for bad arguments, `"int8"` without
            `representative_data`, a model that needs non-built-in (Flex)
            ops (the op is named), or a verification failure (the file is
            not written).
        OSError: if the target directory does not exist or is not writable.
        RuntimeError: under a non-TensorFlow backend.
        ImportError: if `ai_edge_litert` is missing and `verify` or
            `measure_latency` is set.

    Examples:
        >>> import os, tempfile, keras, keras_guided
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.tflite")
        >>> report = keras_guided.export_tflite(model, path)
        >>> report.ok, report.max_abs_diff <= report.tolerance
        (True, True)
    """
    _check_backend()
    filepath = _check_filepath(filepath)
    quantization = _check_quantization(quantization)
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
    validation.check_model(model)
    model = _with_inputs(model, input_shape)
    original, low_precision = model, _copies.low_precision_policy(model)
    if low_precision is not None:
        model = _copies.float32_copy(model)
    # Several inputs (a dict or a list) take the named path of
    # `_inputs`; a one-input model keeps its array path.
    model_inputs = None
    if _inputs.several_inputs(model):
        model_inputs = _inputs.read(
            model, input_shapes, sequence_length
        )
        input_shape = input_dtype = None
    else:
        input_shape, input_dtype = _single_input(
            model, input_shapes, sequence_length
        )
        if _inputs.several_outputs(model):
            model_inputs = _inputs.read(
                model, {model.inputs[0].name: input_shape}
            )
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
    representative_data, sample_inputs = _check_data(
        model_inputs, input_shape, input_dtype, representative_data,
        sample_inputs,
    )
    if verify or measure_latency:
        interpreter_class = _interpreter_class()

    directory = os.path.dirname(filepath)
    try:
        # Created with mode 0o666, so the kernel applies the umask: the
        # file gets the permissions a plain `open` would, with no os.umask
        # call (process-wide, it races with other threads).
        temporary = _atomic.create_temporary(
            directory,
            "." + os.path.basename(filepath)[: -len(".tflite")] + ".",
            ".tmp.tflite",
        )
    except OSError as error:
        raise OSError(
            error.errno,
            f"Cannot write to directory '{directory}' ({error.strerror}). "
            "Choose an output path in a writable directory.",
        ) from None
    try:
        notes = []
        try:
            _convert(model, temporary, quantization, representative_data,
                     int8_io, input_shape, input_dtype, batch_size,
                     model_inputs)
        except ValueError as error:
            if batch_size is None or "neither a custom op" in str(
                error.__cause__ or ""
            ):
                raise
            # Some graphs (attention's reshapes and transposes) convert only
            # with a dynamic batch: retry once and say so.
            try:
                _convert(model, temporary, quantization, representative_data,
                         int8_io, input_shape, input_dtype, None,
                         model_inputs)
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
        with open(temporary, "rb") as f:
            content = f.read()
        report = ExportReport(
            path=filepath,
            bytes=len(content),
            quantization=quantization,
            int8_io=bool(int8_io),
            input_shape=(
                None if input_shape is None
                else (batch_size,) + tuple(input_shape)
            ),
            input_shapes=(
                model_inputs.shapes(batch_size) if model_inputs
                else {model.inputs[0].name: (batch_size,) + input_shape}
            ),
            num_threads=num_threads,
            notes=notes,
        )
        if verify:
            if sample_inputs is None and input_shape is not None:
                sample_inputs = _default_samples(
                    representative_data, input_shape, input_dtype
                )
            elif sample_inputs is None and representative_data is not None:
                sample_inputs = _inputs.take(
                    representative_data, _DEFAULT_SAMPLES
                )
            elif sample_inputs is None:
                sample_inputs = _inputs.default_samples(
                    model, model_inputs, _DEFAULT_SAMPLES
                )
            _verify(report, temporary, model, sample_inputs, tolerance,
                    model_inputs)
        if low_precision is not None:
            notes.append(_low_precision_note(
                original, model, low_precision,
                sample_inputs if verify else None))
        if measure_latency:
            report.latency_ms = _median_latency(
                interpreter_class, content, num_runs, num_threads
            )
        os.replace(temporary, filepath)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return report


def _check_backend():
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            "keras_guided.export_tflite needs the TensorFlow backend (the "
            f"TFLite converter is TensorFlow's). Received backend "
            f"'{backend}'. Save the model with model.save('model.keras') and "
            "export it from a TensorFlow-backend process: KERAS_BACKEND="
            "tensorflow keras-guided export model.keras -o model.tflite"
        )


def _check_filepath(filepath):
    if not isinstance(filepath, (str, os.PathLike)):
        raise ValueError(
            "`filepath` must be a path ending in '.tflite'. "
            f"Received: filepath={filepath!r}"
        )
    filepath = os.path.abspath(os.fspath(filepath))
    if not filepath.endswith(".tflite"):
        raise ValueError(
            "`filepath` must end in '.tflite'. "
            f"Received: filepath='{filepath}'"
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


def _check_quantization(quantization):
    if quantization == "float32":
        return None
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            "`quantization` must be one of None, 'dynamic', 'float16', "
            f"'int8'. Received: quantization={quantization!r}"
        )
    return quantization


def _defined_inputs(model):
    try:
        return model.inputs
    except (AttributeError, ValueError):
        return None


def _with_inputs(model, input_shape):
    """`model`, or `model` called on `keras.Input(input_shape)`."""
    if input_shape is None:
        return model
    if isinstance(input_shape, int) or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool)
        and d > 0 for d in tuple(input_shape)
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


def _single_input(model, input_shapes=None, sequence_length=None):
    validation.check_model(model)
    inputs = _defined_inputs(model)
    if not inputs:
        kind = ("a subclassed model" if not isinstance(model, keras.Sequential)
                else "a Sequential model without an input shape")
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
        model.name, inputs[0].name, tuple(inputs[0].shape[1:]),
        overrides.get(inputs[0].name), sequence_length,
    )
    return shape, inputs[0].dtype


_check_inputs = _inputs.check_array


def _check_data(model_inputs, input_shape, input_dtype, representative_data,
                sample_inputs):
    """`representative_data` and `sample_inputs` checked: arrays for a
    one-input model, `{name: array}` dicts for one with several inputs."""
    checked = []
    for name, data in (("representative_data", representative_data),
                       ("sample_inputs", sample_inputs)):
        if data is None:
            checked.append(None)
        elif input_shape is None:
            checked.append(_inputs.check_data(model_inputs, data, name))
        else:
            checked.append(_check_inputs(data, input_shape, name, input_dtype))
    return checked


def _low_precision_note(original, copy, policy, sample_inputs):
    note = (
        f"model '{original.name}' computes in {policy}, which TFLite "
        "built-in ops do not: a float32 copy (same weights, float32 "
        "compute) was exported"
    )
    if sample_inputs is None:
        return note
    difference = np.max(np.abs(
        _keras_outputs(original, sample_inputs).astype("float64")
        - _keras_outputs(copy, sample_inputs)))
    return (f"{note}; it differs from the {policy} model by up to "
            f"{float(difference):.3g} on the sample inputs")


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ImportError(
            "Verifying or timing a .tflite file needs the LiteRT interpreter "
            f"(package 'ai-edge-litert'). Install it with: {_INSTALL_HINT}, "
            "or pass verify=False (and measure_latency=False)."
        ) from None
    return Interpreter


def converter_settings(quantization, representative_data=None,
                       int8_io=False):
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


def _convert(
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
        quantization, representative_data, int8_io)
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
                    label = (
                        f"layer '{match}' ({type(by_name[match]).__name__})"
                    )
                    if label not in found:
                        found.append(label)
    return found


def _default_samples(representative_data, input_shape, dtype="float32"):
    if representative_data is not None:
        return representative_data[:_DEFAULT_SAMPLES]
    rng = np.random.default_rng(0)
    shape = (_DEFAULT_SAMPLES,) + tuple(input_shape)
    dtype = keras.backend.standardize_dtype(dtype)
    if "int" in dtype:  # token ids: the smallest ones exist in any vocabulary
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype("float32")


def _make_interpreter(interpreter_class, content, num_threads=1):
    interpreter = interpreter_class(
        model_content=content, num_threads=num_threads
    )
    interpreter.allocate_tensors()
    return interpreter


# The interpreter helpers live in `_litert_run`, which the verification
# child process runs as a script; these names stay for in-process callers.
_run_litert = _litert_run.run_litert
_quantize = _litert_run.quantize
_dequantize = _litert_run.dequantize


def _run_in_child(path, inputs, model):
    """Runs the file at `path` on `inputs` in a child Python process.

    A LiteRT abort (a C++ `CHECK` failing in `allocate_tensors`) kills the
    child only; it becomes a `ValueError` here. `inputs` is an array (a
    one-input, one-output file), or a dict `{input name: array}`; then the
    outputs come back as a dict keyed by the signature's output names.
    """
    named = isinstance(inputs, dict)
    suffix = ".npz" if named else ".npy"
    count = (
        _inputs.num_samples(inputs) if named else inputs.shape[0]
    )
    with tempfile.TemporaryDirectory() as directory:
        inputs_path = os.path.join(directory, "inputs" + suffix)
        outputs_path = os.path.join(directory, "outputs" + suffix)
        if named:
            np.savez(inputs_path, **inputs)
        else:
            np.save(inputs_path, inputs)
        command = [sys.executable, _litert_run.__file__, path, inputs_path,
                   outputs_path]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True,
                timeout=_CHILD_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise ValueError(
                f"Running the converted model '{model.name}' in LiteRT took "
                f"more than {_CHILD_TIMEOUT} s on {count} sample "
                "inputs; verification was stopped and the file was not "
                "written. Pass fewer `sample_inputs`, or verify=False."
            ) from None
        if result.returncode == 0 and named:
            with np.load(outputs_path) as archive:
                return {name: archive[name] for name in archive.files}
        if result.returncode == 0:
            return np.load(outputs_path)
    if result.returncode < 0:
        try:
            what = signal.Signals(-result.returncode).name
        except ValueError:
            what = f"signal {-result.returncode}"
        cause = f"the LiteRT runtime crashed ({what})"
    else:
        cause = f"the LiteRT runtime failed (exit status {result.returncode})"
    lines = [line for line in result.stderr.strip().splitlines()
             if line.strip() and not line.startswith("INFO:")]
    detail = f": {lines[-1].strip()}" if lines else ""
    raise ValueError(
        f"Verification of the converted model '{model.name}' failed: "
        f"{cause} while loading or running the file{detail}. It ran in a "
        "child process, so this Python session is unaffected; the file was "
        "not written. This is a LiteRT problem with this model; try "
        "another `quantization`, batch_size=None, or verify=False to write "
        "the file unverified."
    )


def _keras_outputs(model, inputs):
    # Direct calls, not `predict`: no tf.function retraced per model.
    chunks = []
    for start in range(0, inputs.shape[0], 64):
        outputs = model(inputs[start : start + 64], training=False)
        if isinstance(outputs, (list, tuple, dict)):
            raise ValueError(
                "keras_guided.export_tflite verifies single-output models. "
                f"Received: model '{model.name}' with several outputs. Pass "
                "verify=False to export it unverified."
            )
        chunks.append(keras.ops.convert_to_numpy(outputs).astype("float32"))
    return np.concatenate(chunks, axis=0)


def _paired_outputs(path, model, inputs, model_inputs):
    """[(output name, Keras, LiteRT)] on `inputs`, and the sample count."""
    if model_inputs is None:  # One input, one output: the array path.
        expected = _keras_outputs(model, inputs)
        actual = _run_in_child(path, inputs, model)
        return [("output", expected, actual)], int(inputs.shape[0])
    if not isinstance(inputs, dict):  # One input, several outputs.
        inputs = {model_inputs.names[0]: inputs}
    expected = _inputs.keras_outputs(model, model_inputs, inputs)
    actual = _run_in_child(path, inputs, model)
    pairs = _inputs.pair_outputs(model.name, expected, actual)
    return pairs, int(_inputs.num_samples(inputs))


def _verify(report, path, model, inputs, tolerance, model_inputs=None):
    pairs, count = _paired_outputs(path, model, inputs, model_inputs)
    differences = []
    for name, expected, actual in pairs:
        if actual.shape != expected.shape:
            which = "" if len(pairs) == 1 else f" '{name}'"
            raise ValueError(
                f"The LiteRT output{which} has shape {actual.shape} but "
                f"Keras returns {expected.shape}; the conversion of model "
                f"'{model.name}' is not faithful. The file was not written."
            )
        differences.append(
            np.abs(actual.astype("float64") - expected).ravel()
        )
    difference = np.concatenate(differences)
    finite = all(bool(np.all(np.isfinite(actual))) for _, _, actual in pairs)
    report.num_samples = count
    report.max_abs_diff = float(np.max(difference)) if finite else float("inf")
    report.mean_abs_diff = (
        float(np.mean(difference)) if finite else float("inf")
    )
    _, expected, actual = pairs[0]
    if len(pairs) == 1 and expected.ndim >= 2 and expected.shape[-1] > 1:
        agree = np.argmax(actual, -1) == np.argmax(expected, -1)
        report.argmax_agreement = float(np.mean(agree))
    if tolerance is None and report.quantization is None:
        scale = max(
            [1.0] + [float(np.max(np.abs(e))) for _, e, _ in pairs]
        )
        tolerance = FLOAT32_TOLERANCE * scale
    report.tolerance = None if tolerance is None else float(tolerance)
    report.ok = finite and (
        tolerance is None or report.max_abs_diff <= tolerance
    )
    if not report.ok:
        mode = report.quantization or "float32"
        raise ValueError(
            f"The {mode} LiteRT model disagrees with Keras on "
            f"{report.num_samples} sample inputs: max |LiteRT - Keras| = "
            f"{report.max_abs_diff:.3g}, allowed {report.tolerance}. The file "
            f"was not written. Check the model for ops that convert "
            "differently, pass a larger `tolerance`, or verify=False to "
            "write it anyway."
        )


def _median_latency(interpreter_class, content, num_runs, num_threads,
                    statistic="median"):
    """Batch-1 latency of the file's bytes in ms: the median (or `"min"`)
    over `num_runs` timed interpreter runs after a short warm-up."""
    interpreter = _make_interpreter(interpreter_class, content, num_threads)
    details = interpreter.get_input_details()
    dynamic = [d for d in details if int(d["shape_signature"][0]) < 0]
    for detail in dynamic:
        shape = (1,) + tuple(int(d) for d in detail["shape"][1:])
        interpreter.resize_tensor_input(detail["index"], shape)
    if dynamic:
        interpreter.allocate_tensors()
        details = interpreter.get_input_details()
    for detail in details:  # Zeros: valid token ids and masks too.
        sample = np.zeros(tuple(detail["shape"]), dtype=detail["dtype"])
        interpreter.set_tensor(detail["index"], sample)
    for _ in range(min(5, num_runs)):  # Warm-up.
        interpreter.invoke()
    times = []
    for _ in range(num_runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    reduce = np.min if statistic == "min" else np.median
    return float(reduce(times) * 1000.0)
