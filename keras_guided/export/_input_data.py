"""Data for the inputs of a model being exported (see `_inputs`):

* `check_data` validates user data (`representative_data`,
  `sample_inputs`) given as a dict keyed by input name or a list/tuple in
  the model's input order, and returns a dict of arrays keyed by name;
* `default_samples` makes valid random inputs per input: token ids in
  `[0, vocabulary)` when an `Embedding` reads the input, 0/1 masks for an
  input named like a mask, small ints otherwise, normal floats;
* `keras_outputs` runs Keras on a dict of arrays and names every output as
  the LiteRT signature does (the output dict's keys, else `output_<i>`).
"""

import keras
import numpy as np

from keras_guided.export._inputs import file_dtype

_SAMPLES = 32
_CHUNK = 64


def check_array(data, input_shape, name, dtype="float32"):
    """`data` as an array in the model input's dtype (token ids stay ints)."""
    dtype = file_dtype(dtype)
    try:
        array = np.asarray(data)
        if array.dtype == object:
            raise TypeError(array.dtype)
        floating = np.asarray(array, dtype="float64")
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be an array of inputs of shape (num_samples,) + "
            f"{input_shape}. Received: {type(data).__name__}"
        ) from None
    if "int" in dtype and np.any(floating != np.round(floating)):
        raise ValueError(
            f"`{name}` must hold whole numbers: the model input has dtype "
            f"{dtype} (token ids, say). Received non-integer values."
        )
    if not np.all(np.isfinite(floating)):
        raise ValueError(f"`{name}` contains NaN or inf values.")
    array = array.astype(dtype)
    if array.ndim != len(input_shape) + 1 or array.shape[1:] != input_shape:
        raise ValueError(
            f"`{name}` must have shape (num_samples,) + {input_shape}. "
            f"Received shape {array.shape}."
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one sample.")
    return array


def check_data(model_inputs, data, name):
    """User data for a model with several inputs, as `{name: array}`.

    `data` is a dict keyed by input name, or a list/tuple of arrays in the
    model's input order (for a model called with a list). Every array is
    checked like a one-input model's, and all must hold the same number of
    samples.
    """
    names = model_inputs.names
    if isinstance(data, dict):
        if sorted(data) != sorted(names):
            raise ValueError(
                f"`{name}` must be a dict with one array per input of model "
                f"'{model_inputs.model_name}': keys {names}. Received keys "
                f"{sorted(data)}."
            )
        arrays = dict(data)
    elif isinstance(data, (list, tuple)) and model_inputs.structure == "list":
        if len(data) != len(names):
            raise ValueError(
                f"`{name}` must hold one array per input of model "
                f"'{model_inputs.model_name}' ({len(names)}: {names}), in "
                f"that order, or be a dict keyed by those names. Received "
                f"{len(data)} arrays."
            )
        arrays = dict(zip(names, data))
    else:
        expected = (
            "a dict keyed by input name or a list of arrays in input order"
            if model_inputs.structure == "list"
            else "a dict keyed by input name"
        )
        raise ValueError(
            f"`{name}` must be {expected}, since model "
            f"'{model_inputs.model_name}' has several inputs: "
            f"{model_inputs.describe()}. Received: {type(data).__name__}."
        )
    checked = {
        spec.name: check_array(
            arrays[spec.name],
            spec.shape,
            f"{name}['{spec.name}']",
            spec.dtype,
        )
        for spec in model_inputs.inputs
    }
    counts = {key: array.shape[0] for key, array in checked.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"`{name}` must hold the same number of samples for every "
            f"input. Received: {counts}."
        )
    return checked


def take(arrays, stop, start=0):
    """Rows `start:stop` of every array of a dict."""
    return {key: array[start:stop] for key, array in arrays.items()}


def num_samples(arrays):
    return next(iter(arrays.values())).shape[0]


def _vocabulary_size(model, tensor):
    """The `input_dim` of an Embedding reading `tensor` directly, or None."""
    for layer in model.layers:
        size = getattr(layer, "input_dim", None)
        if size is None:
            size = getattr(layer, "vocabulary_size", None)
        if not isinstance(size, (int, np.integer)) or size < 1:
            continue
        try:
            layer_inputs = keras.tree.flatten(layer.input)
        except (AttributeError, ValueError):  # Shared: several inputs.
            continue
        if any(item is tensor for item in layer_inputs):
            return int(size)
    return None


def _tensors_by_name(model, model_inputs):
    if model_inputs.structure == "dict":
        return dict(model.input)
    return dict(zip(model_inputs.names, model.inputs))


def default_samples(model, model_inputs, count=_SAMPLES, seed=0):
    """Valid random inputs for every input of `model`, keyed by name.

    Token ids lie in `[0, vocabulary)` where an Embedding reads the input;
    an input named like a mask (or of dtype bool) gets 0/1 masks that keep
    at least the first position; other integer inputs get 0 or 1; floats
    are standard normal.
    """
    rng = np.random.default_rng(seed)
    tensors = _tensors_by_name(model, model_inputs)
    samples = {}
    for spec in model_inputs.inputs:
        shape = (count,) + tuple(spec.shape)
        if "mask" in spec.name.lower() or spec.dtype == "bool":
            samples[spec.name] = _masks(rng, shape).astype(spec.dtype)
        elif "int" in spec.dtype:
            high = _vocabulary_size(model, tensors.get(spec.name)) or 2
            samples[spec.name] = rng.integers(0, high, size=shape).astype(
                spec.dtype
            )
        else:
            samples[spec.name] = rng.standard_normal(shape).astype("float32")
    return samples


def _masks(rng, shape):
    """0/1 masks: ones on a random-length prefix of axis 1 (at least 1)."""
    masks = np.zeros(shape, dtype="int32")
    if len(shape) < 2 or shape[1] == 0:
        return np.ones(shape, dtype="int32")
    for row, length in enumerate(rng.integers(1, shape[1] + 1, shape[0])):
        masks[row, :length] = 1
    return masks


def output_names(outputs):
    """The LiteRT signature's names for a model's outputs."""
    if isinstance(outputs, dict):
        return list(outputs)
    if isinstance(outputs, (list, tuple)):
        return [f"output_{index}" for index in range(len(outputs))]
    return ["output_0"]


def keras_outputs(model, model_inputs, arrays):
    """Keras' outputs on a dict of arrays, as float32, keyed by the
    signature's output names."""
    chunks = {}
    for start in range(0, num_samples(arrays), _CHUNK):
        batch = model_inputs.pack(take(arrays, start + _CHUNK, start))
        outputs = model(batch, training=False)
        if isinstance(outputs, dict):
            flat = list(outputs.values())
        elif isinstance(outputs, (list, tuple)):
            flat = list(outputs)
        else:
            flat = [outputs]
        for key, value in zip(output_names(outputs), flat):
            if isinstance(value, (list, tuple, dict)):
                raise ValueError(
                    "keras_guided.export_tflite verifies models whose "
                    "outputs are one tensor, a flat list or a flat dict. "
                    f"Received: model '{model.name}' with nested outputs. "
                    "Pass verify=False to export it unverified."
                )
            array = keras.ops.convert_to_numpy(value).astype("float32")
            chunks.setdefault(key, []).append(array)
    return {key: np.concatenate(parts, axis=0) for key, parts in chunks.items()}


def pair_outputs(model_name, expected, actual):
    """Keras' and LiteRT's outputs paired by name: a list of (name, keras,
    litert). One output on each side pairs whatever its names."""
    if len(expected) == 1 and len(actual) == 1:
        ((name, keras_value),) = expected.items()
        return [(name, keras_value, next(iter(actual.values())))]
    if sorted(expected) != sorted(actual):
        raise ValueError(
            f"The LiteRT outputs of model '{model_name}' are named "
            f"{sorted(actual)} but Keras returns {sorted(expected)}; they "
            "cannot be paired for verification. The file was not written. "
            "Pass verify=False to write it unverified."
        )
    return [(name, expected[name], actual[name]) for name in expected]
