"""A model ready to convert: the checks and reads before a conversion
(`prepare`), the conversion to a path (`convert`) and the temporary file
next to the target that the conversion writes (`temporary_file`)."""

import dataclasses
import os

from keras_guided import _atomic
from keras_guided import _copies
from keras_guided import validation
from keras_guided.export import _checks
from keras_guided.export import _conversion


@dataclasses.dataclass(frozen=True)
class Job:
    """A model ready to convert: what `prepare` read and checked."""

    model: object
    original: object
    low_precision: object
    quantization: object
    model_inputs: object
    input_shape: object
    input_dtype: object
    representative_data: object
    sample_inputs: object


def prepare(
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
    return Job(
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


def convert(job, path, int8_io, batch_size):
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


def temporary_file(filepath):
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
