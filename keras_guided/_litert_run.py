"""Runs a .tflite file in the LiteRT interpreter; importable and runnable.

`export.py` verifies a converted file by running this module as a script in
a child process: `python _litert_run.py model.tflite inputs.npy
outputs.npy`. A LiteRT bug that aborts the process (SIGABRT inside
`allocate_tensors`) then ends the child, not the user's Python session.
It imports only NumPy and `ai_edge_litert` (no Keras, no TensorFlow), so
the child starts in a fraction of a second.
"""

import sys

import numpy as np


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
    outputs = run_litert(interpreter, np.load(inputs_path))
    np.save(outputs_path, outputs)


if __name__ == "__main__":
    main(sys.argv)
