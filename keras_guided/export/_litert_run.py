"""Runs a .tflite file in the LiteRT interpreter; importable and runnable.

`_verification` verifies a converted file by running this module as a
script in a child process: `python _litert_run.py model.tflite inputs.npy
outputs.npy` for a one-input file, or `inputs.npz outputs.npz` for a file
with several inputs or outputs, the arrays keyed by the names of the file's
signature (the model's input names and output keys). A LiteRT bug that
aborts the process (SIGABRT inside `allocate_tensors`) then ends the
child, not the user's Python session.
It imports only NumPy and `ai_edge_litert` (no Keras, no TensorFlow), so
the child starts in a fraction of a second.
"""

import sys

import numpy as np


def describe_exit(returncode):
    """How a child process ended, in words: `crashed (SIGSEGV)` for a
    signal, `failed (exit status 3)` otherwise."""
    import signal

    if returncode < 0:
        try:
            what = signal.Signals(-returncode).name
        except ValueError:
            what = f"signal {-returncode}"
        return f"crashed ({what})"
    return f"failed (exit status {returncode})"


def make_interpreter(content, num_threads=1):
    """An allocated `ai_edge_litert` interpreter for the file's bytes."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def run_litert(interpreter, inputs):
    """Runs `inputs` through the interpreter in the file's batch size."""
    input_detail = interpreter.get_input_details()[0]
    batch = int(input_detail["shape_signature"][0])
    if batch < 0:
        interpreter.resize_tensor_input(
            input_detail["index"], (inputs.shape[0],) + inputs.shape[1:]
        )
        interpreter.allocate_tensors()
        batch = inputs.shape[0]
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    outputs = []
    for start in range(0, inputs.shape[0], batch):
        chunk = inputs[start : start + batch]
        count = chunk.shape[0]
        if count < batch:  # Pad the last chunk to the baked-in batch size.
            pad = np.repeat(chunk[-1:], batch - count, axis=0)
            chunk = np.concatenate([chunk, pad], axis=0)
        interpreter.set_tensor(
            input_detail["index"], quantize(chunk, input_detail)
        )
        interpreter.invoke()
        result = interpreter.get_tensor(output_detail["index"])
        outputs.append(dequantize(result, output_detail)[:count])
    return np.concatenate(outputs, axis=0)


def run_litert_by_name(interpreter, inputs):
    """Runs a dict of named inputs through the file's one signature.

    Inputs are matched to the file's tensors by the signature's input names
    (never by position: the converter orders them by its own rules), cut in
    chunks of the file's batch size (the last one padded), quantized where
    the file takes int8. Returns a dict of float32 (dequantized) outputs
    keyed by the signature's output names.
    """
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(
            "A file with several inputs or outputs is run through its one "
            f"signature; this file has {len(signatures)} signatures "
            f"({sorted(signatures)})."
        )
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    input_details = runner.get_input_details()
    output_details = runner.get_output_details()
    if len(inputs) == 1 and len(input_details) == 1:  # Any name pairs.
        inputs = {next(iter(input_details)): next(iter(inputs.values()))}
    if sorted(inputs) != sorted(input_details):
        raise ValueError(
            f"The file's inputs are {sorted(input_details)}; received arrays "
            f"for {sorted(inputs)}."
        )
    num_samples = next(iter(inputs.values())).shape[0]
    batches = {int(d["shape_signature"][0]) for d in input_details.values()}
    batch = num_samples if min(batches) < 0 else max(batches)
    outputs = {name: [] for name in output_details}
    for start in range(0, num_samples, batch):
        feed = {}
        for name, array in inputs.items():
            chunk = array[start : start + batch]
            count = chunk.shape[0]
            if count < batch:  # Pad to the baked-in batch size.
                pad = np.repeat(chunk[-1:], batch - count, axis=0)
                chunk = np.concatenate([chunk, pad], axis=0)
            feed[name] = quantize(chunk, input_details[name])
        results = runner(**feed)
        for name, detail in output_details.items():
            outputs[name].append(dequantize(results[name], detail)[:count])
    return {
        name: np.concatenate(chunks, axis=0) for name, chunks in outputs.items()
    }


def quantize(array, detail):
    """`array` in the input tensor's dtype (quantized if it is int8)."""
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(np.asarray(array).dtype, np.floating) or (
        detail["dtype"] == np.float32 or not scale
    ):
        return np.asarray(array).astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    quantized = np.round(array / scale + zero_point)
    return np.clip(quantized, info.min, info.max).astype(detail["dtype"])


def dequantize(array, detail):
    """The output tensor as float32 (dequantized if it is int8)."""
    if np.issubdtype(array.dtype, np.floating):
        return array.astype("float32")
    scale, zero_point = detail["quantization"]
    return (array.astype("float32") - zero_point) * scale


def main(argv):
    model_path, inputs_path, outputs_path = argv[1:4]
    with open(model_path, "rb") as f:
        interpreter = make_interpreter(f.read())
    if inputs_path.endswith(".npz"):
        with np.load(inputs_path) as archive:
            inputs = {name: archive[name] for name in archive.files}
        np.savez(outputs_path, **run_litert_by_name(interpreter, inputs))
        return
    outputs = run_litert(interpreter, np.load(inputs_path))
    np.save(outputs_path, outputs)


if __name__ == "__main__":
    main(sys.argv)
