"""The command's files: the input model, the output paths, calibration data.

Every check runs before any slow work and fails with a one-line
`CommandError` that names the file: a missing path, a directory, a file
that is not a `.keras` archive, an output with the wrong suffix or in a
directory that does not exist or cannot be written. Models are loaded with
`keras.saving.load_model(..., safe_mode=True)`, so a `.keras` file with
embedded Python code (a Lambda layer) is refused; they are saved through a
temporary file and a rename.
"""

import os
import tempfile
import zipfile

from keras_guided.cli._messages import CommandError
from keras_guided.cli._messages import one_line
from keras_guided.cli._messages import progress


def _check_model_path(path):
    if not os.path.exists(path):
        raise CommandError(f"model file '{path}' does not exist")
    if os.path.isdir(path):
        raise CommandError(
            f"'{path}' is a directory, expected a .keras model file"
        )
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise CommandError(
            f"'{path}' is not a Keras model file (expected a .keras archive "
            "written by model.save('model.keras'))"
        )


def load_model(path):
    """Loads a `.keras` file in safe mode, or raises a one-line `CommandError`.

    Args:
        path: path of a `.keras` file.

    Returns:
        The loaded `keras.Model` (not compiled).

    Raises:
        CommandError: if the file is missing or is not a loadable Keras model.
    """
    _check_model_path(path)
    progress(f"loading {path} ...")
    import keras

    # Registers the package's serializable classes (regularizers, guidance,
    # the distiller) with Keras before loading.
    from keras_guided import distill  # noqa: F401
    from keras_guided import guidance  # noqa: F401
    from keras_guided import regularizers  # noqa: F401

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Loading fails in many ways.
        raise CommandError(
            f"could not load '{path}' as a Keras model: {one_line(error)}"
        ) from error
    if not isinstance(model, keras.Model):
        raise CommandError(
            f"'{path}' holds a {type(model).__name__}, expected a keras.Model"
        )
    return model


def check_output(path, suffix):
    if not path.endswith(suffix):
        raise CommandError(
            f"the output file must end in '{suffix}'. Received: '{path}'"
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"output directory '{directory}' does not exist")
    if os.path.isdir(path):
        raise CommandError(f"output '{path}' is a directory")
    try:
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".probe.")
    except OSError as error:
        raise CommandError(
            f"cannot write to output directory '{directory}' ({error.strerror})"
        ) from None
    os.close(handle)
    os.remove(probe)


def save_model(model, path):
    """Saves `model` to `path` through a temporary file and a rename."""
    from keras_guided import _atomic

    with _atomic.atomic_path(path) as temporary:
        model.save(temporary)


def load_calibration(path):
    import numpy as np

    if not os.path.isfile(path):
        raise CommandError(f"calibration file '{path}' does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise CommandError(
            f"could not read '{path}' as a .npy array or .npz archive: "
            f"{one_line(error)}"
        ) from None
    if not isinstance(data, np.ndarray):  # An .npz: one array per input.
        with data:
            return {name: data[name] for name in data.files}
    return data


def first_rows(data, count):
    if isinstance(data, dict):
        return {name: array[:count] for name, array in data.items()}
    return data[:count]
