"""`keras_guided.export`: a verified LiteRT (TFLite) file from a Keras model.

`export_tflite`, `ExportReport` and the option constants (`QUANTIZATIONS`,
`FLOAT32_TOLERANCE`) are public and live here, with `tflite_content` (the
bytes `export_tflite` writes, which the latency tables and the closed
latency loop time), `converter_settings` and `apply_settings` (the
converter settings the per-layer latency tables share); the parts are
private to this package, each job in its own module:

* `_checks`: the arguments checked before any conversion, and the model's
  input or inputs read;
* `_inputs`: input shapes, sample and calibration data of a model with
  one or several inputs;
* `_converter`: the converter settings of a quantization mode and the
  converter run, also as a child process (int8 calibration);
* `_conversion`: the conversion and its errors (the Flex ops named, a
  crashed int8 calibration), the dynamic-batch retry;
* `_verification`: the file run in LiteRT and compared with Keras;
* `_litert_run`: the LiteRT interpreter run, also as a child process;
* `_interpreter`: the interpreter in this process, and the latency.

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
import tempfile

from keras_guided import _atomic
from keras_guided import _copies
from keras_guided import validation
from keras_guided.export import _checks
from keras_guided.export import _conversion
from keras_guided.export import _interpreter
from keras_guided.export import _verification
from keras_guided.export._checks import QUANTIZATIONS
from keras_guided.export._converter import apply_settings
from keras_guided.export._converter import converter_settings
from keras_guided.export._verification import FLOAT32_TOLERANCE


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
            for float32, the larger of `1e-5 * max(1, max |Keras output|)`
            and 10 times how far Keras' own outputs move when the float
            inputs move by one float32 ulp (a deep network amplifies
            rounding, and LiteRT sums in another order); for quantized
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
    _checks.check_backend()
    filepath = _checks.check_filepath(filepath)
    quantization = _checks.check_quantization(quantization)
    _checks.check_options(
        quantization, int8_io, num_runs, num_threads, batch_size, tolerance
    )
    job = _prepare(
        model,
        quantization,
        representative_data,
        sample_inputs,
        input_shapes,
        sequence_length,
        input_shape,
    )
    model, original, low_precision = job.model, job.original, job.low_precision
    model_inputs, input_shape = job.model_inputs, job.input_shape
    input_dtype = job.input_dtype
    representative_data = job.representative_data
    sample_inputs = job.sample_inputs
    if verify or measure_latency:
        interpreter_class = _interpreter.import_interpreter()

    temporary = _temporary_file(filepath)
    try:
        batch_size, notes = _convert(job, temporary, int8_io, batch_size)
        with open(temporary, "rb") as f:
            content = f.read()
        report = ExportReport(
            path=filepath,
            bytes=len(content),
            quantization=quantization,
            int8_io=bool(int8_io),
            input_shape=(
                None
                if input_shape is None
                else (batch_size,) + tuple(input_shape)
            ),
            input_shapes=(
                model_inputs.shapes(batch_size)
                if model_inputs
                else {model.inputs[0].name: (batch_size,) + input_shape}
            ),
            num_threads=num_threads,
            notes=notes,
        )
        if verify:
            sample_inputs = _verification.choose_samples(
                model,
                model_inputs,
                input_shape,
                input_dtype,
                representative_data,
                sample_inputs,
            )
            _verification.verify(
                report, temporary, model, sample_inputs, tolerance, model_inputs
            )
        if low_precision is not None:
            notes.append(
                _verification.low_precision_note(
                    original,
                    model,
                    low_precision,
                    sample_inputs if verify else None,
                )
            )
        if measure_latency:
            report.latency_ms = _interpreter.median_latency(
                interpreter_class, content, num_runs, num_threads
            )
        os.replace(temporary, filepath)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return report


def tflite_content(
    model,
    quantization=None,
    representative_data=None,
    batch_size=1,
    input_shapes=None,
    sequence_length=None,
    input_shape=None,
):
    """The `.tflite` bytes `export_tflite` writes for these arguments.

    The same checks and the same conversion as `keras_guided.export_tflite`
    (the float32 copy of a mixed-precision model, the dynamic-batch retry,
    int8 calibration in a child process), without verification or a file:
    what the latency tables and the closed latency loop time, so what is
    timed is what the exporter ships.

    Args:
        model: a built `keras.Model`, as for `export_tflite`.
        quantization: `None` or `"float32"`, `"dynamic"`, `"float16"` or
            `"int8"`. Defaults to `None`.
        representative_data: int8 calibration data, as for
            `export_tflite`. Defaults to `None`.
        batch_size, input_shapes, sequence_length, input_shape: as for
            `export_tflite`.

    Returns:
        The file's bytes.
    """
    _checks.check_backend()
    quantization = _checks.check_quantization(quantization)
    _checks.check_options(quantization, False, 1, 1, batch_size, None)
    job = _prepare(
        model,
        quantization,
        representative_data,
        None,
        input_shapes,
        sequence_length,
        input_shape,
    )
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.tflite")
        _convert(job, path, False, batch_size)
        with open(path, "rb") as f:
            return f.read()


@dataclasses.dataclass(frozen=True)
class _Job:
    """A model ready to convert: what `_prepare` read and checked."""

    model: object
    original: object
    low_precision: object
    quantization: object
    model_inputs: object
    input_shape: object
    input_dtype: object
    representative_data: object
    sample_inputs: object


def _prepare(
    model,
    quantization,
    representative_data,
    sample_inputs,
    input_shapes,
    sequence_length,
    input_shape,
):
    """The checks and reads before a conversion (`quantization` checked)."""
    validation.check_model(model)
    model = _checks.with_inputs(model, input_shape)
    original, low_precision = model, _copies.low_precision_policy(model)
    if low_precision is not None:
        model = _copies.float32_copy(model)
    model_inputs, input_shape, input_dtype = _checks.read_inputs(
        model,
        input_shapes,
        sequence_length,
        data=(representative_data, sample_inputs),
    )
    _checks.check_calibration(
        quantization, representative_data, model_inputs, input_shape
    )
    representative_data, sample_inputs = _checks.check_data(
        model_inputs,
        input_shape,
        input_dtype,
        representative_data,
        sample_inputs,
    )
    return _Job(
        model,
        original,
        low_precision,
        quantization,
        model_inputs,
        input_shape,
        input_dtype,
        representative_data,
        sample_inputs,
    )


def _convert(job, path, int8_io, batch_size):
    """`job`'s model converted to `path`; `(batch_size, notes)`."""
    return _conversion.convert_with_fallback(
        job.model,
        path,
        job.quantization,
        job.representative_data,
        int8_io,
        job.input_shape,
        job.input_dtype,
        batch_size,
        job.model_inputs,
    )


def _temporary_file(filepath):
    """A new empty file next to `filepath`, renamed over it once written
    and verified (so a failure never leaves a partial file there)."""
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
    return temporary


__all__ = [
    "FLOAT32_TOLERANCE",
    "QUANTIZATIONS",
    "ExportReport",
    "apply_settings",
    "converter_settings",
    "export_tflite",
    "tflite_content",
]
