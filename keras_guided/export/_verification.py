"""Verification: the written file run in LiteRT and compared with Keras.

`choose_samples` picks the inputs (the user's `sample_inputs`, else the
first rows of `representative_data`, else fixed random valid inputs);
`verify` runs Keras and the file on them and fills the report's
differences, refusing a file that disagrees (beyond the float32 tolerance,
or with a non-finite output). The file runs in a child Python process
(`_litert_run` as a script), so a LiteRT abort becomes a `ValueError`
here instead of ending the user's session. `low_precision_note` says how
far the float32 copy of a mixed-precision model is from the model.
"""

import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_guided.export import _input_data
from keras_guided.export import _litert_run
from keras_guided.export._litert_run import describe_exit

FLOAT32_TOLERANCE = 1e-5
NOISE_FACTOR = 10.0
_DEFAULT_SAMPLES = 32
_CHILD_TIMEOUT = 600


def choose_samples(
    model,
    model_inputs,
    input_shape,
    input_dtype,
    representative_data,
    sample_inputs,
):
    """The verification inputs: `sample_inputs` if given, else the first
    rows of `representative_data`, else fixed random valid inputs."""
    if sample_inputs is None and input_shape is not None:
        sample_inputs = _default_samples(
            representative_data, input_shape, input_dtype
        )
    elif sample_inputs is None and representative_data is not None:
        sample_inputs = _input_data.take(representative_data, _DEFAULT_SAMPLES)
    elif sample_inputs is None:
        sample_inputs = _input_data.default_samples(
            model, model_inputs, _DEFAULT_SAMPLES
        )
    return sample_inputs


def _default_samples(representative_data, input_shape, dtype="float32"):
    if representative_data is not None:
        return representative_data[:_DEFAULT_SAMPLES]
    rng = np.random.default_rng(0)
    shape = (_DEFAULT_SAMPLES,) + tuple(input_shape)
    dtype = keras.backend.standardize_dtype(dtype)
    if "int" in dtype:  # token ids: the smallest ones exist in any vocabulary
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype("float32")


def _run_in_child(path, inputs, model):
    """Runs the file at `path` on `inputs` in a child Python process.

    A LiteRT abort (a C++ `CHECK` failing in `allocate_tensors`) kills the
    child only; it becomes a `ValueError` here. `inputs` is an array (a
    one-input, one-output file), or a dict `{input name: array}`; then the
    outputs come back as a dict keyed by the signature's output names.
    """
    named = isinstance(inputs, dict)
    suffix = ".npz" if named else ".npy"
    count = _input_data.num_samples(inputs) if named else inputs.shape[0]
    with tempfile.TemporaryDirectory() as directory:
        inputs_path = os.path.join(directory, "inputs" + suffix)
        outputs_path = os.path.join(directory, "outputs" + suffix)
        if named:
            np.savez(inputs_path, **inputs)
        else:
            np.save(inputs_path, inputs)
        command = [
            sys.executable,
            _litert_run.__file__,
            path,
            inputs_path,
            outputs_path,
        ]
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
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
    cause = f"the LiteRT runtime {describe_exit(result.returncode)}"
    lines = [
        line
        for line in result.stderr.strip().splitlines()
        if line.strip() and not line.startswith("INFO:")
    ]
    detail = f": {lines[-1].strip()}" if lines else ""
    raise ValueError(
        f"Verification of the converted model '{model.name}' failed: "
        f"{cause} while loading or running the file{detail}. It ran in a "
        "child process, so this Python session is unaffected; the file was "
        "not written. This is a LiteRT problem with this model; try "
        "another `quantization`, batch_size=None, or verify=False to write "
        "the file unverified."
    )


def keras_outputs(model, inputs):
    """The float32 outputs of a single-output `model` on the array
    `inputs`, run in chunks of 64 without `predict`."""
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
        expected = keras_outputs(model, inputs)
        actual = _run_in_child(path, inputs, model)
        return [("output", expected, actual)], int(inputs.shape[0])
    if not isinstance(inputs, dict):  # One input, several outputs.
        inputs = {model_inputs.names[0]: inputs}
    expected = _input_data.keras_outputs(model, model_inputs, inputs)
    actual = _run_in_child(path, inputs, model)
    pairs = _input_data.pair_outputs(model.name, expected, actual)
    return pairs, int(_input_data.num_samples(inputs))


def _nudged(inputs, rng):
    """`inputs` with every float entry moved by one float32 ulp (relative
    2**-23, random sign); integer inputs (token ids) are kept."""
    if isinstance(inputs, dict):
        return {name: _nudged(value, rng) for name, value in inputs.items()}
    inputs = np.asarray(inputs)
    if not np.issubdtype(inputs.dtype, np.floating):
        return inputs
    signs = rng.choice(np.array([-1.0, 1.0]), size=inputs.shape)
    return (inputs * (1.0 + signs * 2.0**-23)).astype(inputs.dtype)


def rounding_noise(model, inputs, model_inputs, pairs):
    """How far Keras' own outputs (`pairs`: name, Keras, LiteRT) move when
    the float inputs move by one float32 ulp: the model's sensitivity to
    float32 rounding, which is what a file summing in another order can
    differ by."""
    nudged = _nudged(inputs, np.random.default_rng(0))
    if model_inputs is None:
        moved = {pairs[0][0]: keras_outputs(model, nudged)}
    else:
        if not isinstance(nudged, dict):
            nudged = {model_inputs.names[0]: nudged}
        moved = _input_data.keras_outputs(model, model_inputs, nudged)
        if len(moved) == 1:
            moved = {pairs[0][0]: next(iter(moved.values()))}
    deltas = [
        float(np.max(np.abs(moved[name].astype("float64") - expected)))
        for name, expected, _ in pairs
        if name in moved and moved[name].size
    ]
    return max([d for d in deltas if np.isfinite(d)], default=0.0)


def float32_tolerance(model, inputs, model_inputs, pairs):
    """The default float32 bound: the larger of `1e-5 * max(1, max
    |output|)` and `NOISE_FACTOR` times `rounding_noise`. LiteRT and Keras
    sum in different orders; in a deep, poorly conditioned network the
    rounding is amplified layer by layer (ResNet50 at 64 x 64: 4.2e-4 at
    output scale 8.4, one ulp of input moving Keras' own output 2.8e-4),
    while a conversion that computes something else is off by far more
    than the model's own rounding noise. Returns `(bound, noise)`."""
    scale = max([1.0] + [float(np.max(np.abs(e))) for _, e, _ in pairs])
    noise = rounding_noise(model, inputs, model_inputs, pairs)
    return max(FLOAT32_TOLERANCE * scale, NOISE_FACTOR * noise), noise


def verify(report, path, model, inputs, tolerance, model_inputs=None):
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
        differences.append(np.abs(actual.astype("float64") - expected).ravel())
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
    basis = ""
    if tolerance is None and report.quantization is None:
        tolerance, noise = float32_tolerance(model, inputs, model_inputs, pairs)
        basis = (
            f" (the float32 default: the larger of {FLOAT32_TOLERANCE:g} x "
            f"the output scale and {NOISE_FACTOR:g} x {noise:.3g}, how far "
            "Keras' own outputs move when the inputs move by one ulp)"
        )
    report.tolerance = None if tolerance is None else float(tolerance)
    report.ok = finite and (
        tolerance is None or report.max_abs_diff <= tolerance
    )
    if not report.ok:
        mode = report.quantization or "float32"
        raise ValueError(
            f"The {mode} LiteRT model disagrees with Keras on "
            f"{report.num_samples} sample inputs: max |LiteRT - Keras| = "
            f"{report.max_abs_diff:.3g}, allowed "
            f"{'finite' if tolerance is None else format(tolerance, '.3g')}"
            f"{basis}. The file "
            f"was not written. Check the model for ops that convert "
            "differently, pass a larger `tolerance`, or verify=False to "
            "write it anyway."
        )


def low_precision_note(original, copy, policy, sample_inputs):
    note = (
        f"model '{original.name}' computes in {policy}, which TFLite "
        "built-in ops do not: a float32 copy (same weights, float32 "
        "compute) was exported"
    )
    if sample_inputs is None:
        return note
    difference = np.max(
        np.abs(
            keras_outputs(original, sample_inputs).astype("float64")
            - keras_outputs(copy, sample_inputs)
        )
    )
    return (
        f"{note}; it differs from the {policy} model by up to "
        f"{float(difference):.3g} on the sample inputs"
    )
