"""`export_tflite` and `tflite_content`: the one conversion, written as a
verified file or returned as bytes."""

import os
import tempfile

from keras_guided.export import _checks
from keras_guided.export import _interpreter
from keras_guided.export import _verification
from keras_guided.export._job import convert
from keras_guided.export._job import prepare
from keras_guided.export._job import temporary_file
from keras_guided.export._report import ExportReport


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
    job = prepare(
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

    temporary = temporary_file(filepath)
    try:
        batch_size, notes = convert(job, temporary, int8_io, batch_size)
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
    job = prepare(
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
        convert(job, path, False, batch_size)
        with open(path, "rb") as f:
            return f.read()
