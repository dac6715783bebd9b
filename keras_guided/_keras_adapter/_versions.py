"""The Keras versions the private names used here were checked on."""

import keras

CHECKED_KERAS_VERSIONS = ("3.15.1",)


def checked():
    """Whether the installed Keras is one this adapter was checked on."""
    return keras.version() in CHECKED_KERAS_VERSIONS
