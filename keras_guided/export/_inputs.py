"""The inputs of a model being exported: names, shapes, dtypes, structure.

`export_tflite` takes models with one input (an array in, the historical
path) and models with several: a dict of inputs, as keras-hub backbones
take (`{"token_ids": ..., "padding_mask": ...}`), or a list (a Siamese
pair). This module holds what the exporter needs to know about them:

* `read` turns a model's inputs into a `ModelInputs`: one `ExportInput`
  (name, shape without the batch, dtype) per input, and the structure the
  model is called with. A dimension declared `None` (a sequence length) is
  filled from `sequence_length=` or `input_shapes=`, else read off the
  user's data (`shapes_from_data`), or refused with the argument to pass.

The data given for those inputs, and the sample data made for them, are
`_input_data`'s.

The LiteRT file's signature carries the same names (the exporter names each
`tf.TensorSpec` by its input), so verification and calibration match inputs
by name, never by position: the converter orders a file's inputs by its own
rules, not the model's.
"""

import dataclasses

import keras
import numpy as np

STRUCTURES = ("single", "list", "dict")


@dataclasses.dataclass(frozen=True)
class ExportInput:
    """One input of an exported model.

    Attributes:
        name: the name in the file's signature: the dict key for a model
            called with a dict, else the `keras.Input`'s name.
        shape: the shape without the batch, every dimension concrete.
        dtype: the dtype the file takes (`"float32"` for floating inputs,
            the model's integer or bool dtype otherwise).
    """

    name: str
    shape: tuple
    dtype: str


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """The inputs of a model, in the structure the model is called with.

    Attributes:
        model_name: the model's name, for messages.
        structure: `"single"` (one tensor), `"list"` (a list, in this
            order) or `"dict"` (keyed by `ExportInput.name`).
        inputs: a tuple of `ExportInput`, in the model's order.
    """

    model_name: str
    structure: str
    inputs: tuple

    @property
    def names(self):
        return [spec.name for spec in self.inputs]

    def shapes(self, batch_size):
        """`{name: (batch_size,) + shape}`."""
        return {
            spec.name: (batch_size,) + tuple(spec.shape) for spec in self.inputs
        }

    def describe(self):
        """`"token_ids: (num_samples, 32) int32, ..."` for messages."""
        return ", ".join(
            f"'{spec.name}': (num_samples, "
            + "".join(f"{d}, " for d in spec.shape).rstrip(", ")
            + f") {spec.dtype}"
            for spec in self.inputs
        )

    def signature(self, batch_size):
        """The `input_signature` for `model.export`, each spec named."""
        import tensorflow as tf

        specs = [
            tf.TensorSpec(
                (batch_size,) + tuple(spec.shape), spec.dtype, name=spec.name
            )
            for spec in self.inputs
        ]
        if self.structure == "dict":
            return [
                {spec.name: tensor for spec, tensor in zip(self.inputs, specs)}
            ]
        if self.structure == "list":
            return [specs]
        return specs

    def pack(self, arrays):
        """A dict of arrays keyed by name, as the model is called."""
        if self.structure == "dict":
            return {name: arrays[name] for name in self.names}
        if self.structure == "list":
            return [arrays[name] for name in self.names]
        return arrays[self.names[0]]


def _several(model, tensors, structure):
    """Whether `model.<tensors>` holds several tensors or `model.<structure>`
    is a dict (not one tensor)."""
    try:
        flat = getattr(model, tensors)
        nested = getattr(model, structure)
    except (AttributeError, ValueError):
        return False
    return bool(flat) and (len(flat) > 1 or isinstance(nested, dict))


def several_inputs(model):
    """Whether `model` takes a dict or several inputs (not one tensor)."""
    return _several(model, "inputs", "input")


def several_outputs(model):
    """Whether `model` returns a dict or several tensors."""
    return _several(model, "outputs", "output")


def read(model, input_shapes=None, sequence_length=None):
    """The `ModelInputs` of a model with one or several inputs.

    Args:
        model: a built Functional (or Sequential) model.
        input_shapes: `None`, a dict `{input name: shape without the
            batch}`, or (one-input model) one shape.
        sequence_length: `None` or a positive int that fills a `None` first
            dimension (after the batch) of every input.

    Raises:
        ValueError: for a bad `input_shapes` or `sequence_length`, or an
            input with a `None` dimension neither fills.
    """
    check_sequence_length(sequence_length)
    structure = model.input
    if isinstance(structure, dict):
        kind = "dict"
        named = list(structure.items())
    elif isinstance(structure, (list, tuple)) and len(model.inputs) > 1:
        kind = "list"
        named = [(tensor.name, tensor) for tensor in model.inputs]
    else:
        kind = "single"
        tensor = model.inputs[0]
        named = [(tensor.name, tensor)]
    if isinstance(structure, (list, tuple)) and kind == "list":
        flat = keras.tree.flatten(structure)
        if len(flat) != len(model.inputs):
            raise ValueError(
                "keras_guided.export_tflite supports models called with one "
                "tensor, a flat list or a flat dict of tensors. Received: "
                f"model '{model.name}' with nested inputs {structure}."
            )
    names = [name for name, _ in named]
    overrides = check_input_shapes(model, input_shapes, names)
    inputs = []
    for name, tensor in named:
        shape = resolve_shape(
            model.name,
            name,
            tuple(tensor.shape[1:]),
            overrides.get(name),
            sequence_length,
        )
        inputs.append(ExportInput(name, shape, file_dtype(tensor.dtype)))
    return ModelInputs(model.name, kind, tuple(inputs))


def shapes_from_data(model, input_shapes, sequence_length, data):
    """`input_shapes` with the `None` sizes of every input filled from
    `data` (the user's `representative_data`, else `sample_inputs`).

    An input whose declared shape has a `None` dimension (a sequence
    length), that `input_shapes` does not size and with no
    `sequence_length`, takes its sizes from the data given for it (an
    array for a one-input model, a dict by input name or a list in input
    order): fixed-length calibration data says the length the file
    should have. Data of the wrong rank is left to the data checks.
    """
    if sequence_length is not None:
        return input_shapes
    data = next((d for d in data if d is not None), None)
    if data is None:
        return input_shapes
    try:
        structure = model.input
    except (AttributeError, ValueError):  # A Sequential never called.
        structure = None
    if isinstance(structure, dict):
        named = list(structure.items())
    else:
        named = [(tensor.name, tensor) for tensor in model.inputs]
    names = [name for name, _ in named]
    overrides = dict(check_input_shapes(model, input_shapes, names))
    if isinstance(data, dict):
        arrays = data
    elif isinstance(data, (list, tuple)) and len(data) == len(names) > 1:
        arrays = dict(zip(names, data))
    elif len(names) == 1 and not isinstance(data, (dict, list, tuple)):
        arrays = {names[0]: data}
    else:
        return input_shapes
    for name, tensor in named:
        declared = tuple(tensor.shape[1:])
        if name in overrides or None not in declared or name not in arrays:
            continue
        shape = np.shape(arrays[name])[1:]
        if len(shape) == len(declared):
            overrides[name] = tuple(
                int(size) if dim is None else dim
                for dim, size in zip(declared, shape)
            )
    return overrides or input_shapes


def file_dtype(dtype):
    """The dtype the file takes: integer and bool kept, floats as float32."""
    dtype = keras.backend.standardize_dtype(dtype)
    if "int" in dtype or "bool" in dtype:
        return dtype
    return "float32"


def check_sequence_length(sequence_length):
    if sequence_length is not None and (
        isinstance(sequence_length, bool)
        or not isinstance(sequence_length, (int, np.integer))
        or sequence_length < 1
    ):
        raise ValueError(
            "`sequence_length` must be a positive int or None. "
            f"Received: sequence_length={sequence_length!r}"
        )


def _is_shape(value):
    return isinstance(value, (tuple, list)) and all(
        dim is None
        or (isinstance(dim, (int, np.integer)) and not isinstance(dim, bool))
        for dim in value
    )


def check_input_shapes(model, input_shapes, names):
    """`input_shapes` as `{name: shape}` (every key a real input name)."""
    if input_shapes is None:
        return {}
    if _is_shape(input_shapes) and len(names) == 1:
        return {names[0]: tuple(input_shapes)}
    if not isinstance(input_shapes, dict) or not all(
        _is_shape(shape) for shape in input_shapes.values()
    ):
        raise ValueError(
            "`input_shapes` must be a dict {input name: shape without the "
            f"batch}} (model '{model.name}' has inputs {names}), or one shape "
            "for a one-input model. Received: "
            f"input_shapes={input_shapes!r}"
        )
    unknown = sorted(set(input_shapes) - set(names))
    if unknown:
        raise ValueError(
            f"`input_shapes` names inputs that model '{model.name}' does not "
            f"have: {unknown}. Its inputs are {names}."
        )
    return {name: tuple(shape) for name, shape in input_shapes.items()}


def resolve_shape(model_name, name, declared, override, sequence_length):
    """The concrete shape (no batch) of input `name`, or a clear error."""
    declared = tuple(declared)
    shape = declared
    if override is not None:
        if (
            len(override) != len(declared)
            or any(d is not None and d != o for d, o in zip(declared, override))
            or any(o is not None and o < 1 for o in override)
        ):
            raise ValueError(
                f"`input_shapes['{name}']` must fill the unknown (None) "
                f"dimensions of the declared shape {declared} with positive "
                f"sizes and keep the others. Received: {override}."
            )
        shape = tuple(override)
    if sequence_length is not None and shape and shape[0] is None:
        shape = (int(sequence_length),) + shape[1:]
    if any(dim is None for dim in shape):
        example = tuple(128 if d is None else d for d in shape)
        raise ValueError(
            "keras_guided.export_tflite needs a fixed input shape (apart "
            f"from the batch). Received: model '{model_name}' with input "
            f"'{name}' of shape {(None,) + declared}. Pass the sizes the "
            "file should take, e.g. sequence_length=128 (fills a None "
            "sequence length of every input) or "
            f"input_shapes={{'{name}': {example}}}, or rebuild the model "
            "with fixed sizes in keras.Input(shape=...)."
        )
    return tuple(int(dim) for dim in shape)
