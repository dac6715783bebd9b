"""Small backend-agnostic helpers shared by the tests."""

import keras
import numpy as np


def gradient(fn, array):
    """Gradient of the scalar `fn(x)` with respect to `x`, as numpy."""
    array = np.asarray(array, "float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(array)
        with tf.GradientTape() as tape:
            value = fn(x)
        return tape.gradient(value, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda x: fn(x))(array))
    if backend == "torch":
        import torch

        x = torch.tensor(array, requires_grad=True)
        fn(x).backward()
        return x.grad.numpy()
    raise NotImplementedError(f"No gradient helper for backend {backend!r}")
