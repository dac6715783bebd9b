"""The demo's data and network: the digits, the validation split, the
seeds, and the CNN."""

_VALIDATION_SHARE = 0.15


def load_data(seed=0):
    """Digits as `(x_train, y_train, x_test, y_test)`, images in [0, 1].

    A stratified 80/20 split; images have shape `(8, 8, 1)`.

    Examples:
        >>> import keras_guided.demo
        >>> x_train, y_train, x_test, y_test = keras_guided.demo.load_data()
        >>> x_train.shape, x_test.shape
        ((1437, 8, 8, 1), (360, 8, 8, 1))
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target,
        test_size=0.2,
        random_state=seed,
        stratify=digits.target,
    )
    return x_train, y_train, x_test, y_test


def split_validation(x_train, y_train, seed=0):
    """`(x_fit, y_fit, x_val, y_val)`: a stratified share
    (`_VALIDATION_SHARE`, 15 %) of the training images held out to pick
    the fine-tune's best epoch; the demo trains on the rest.

    Examples:
        >>> import keras_guided.demo
        >>> x, y, _, _ = keras_guided.demo.load_data()
        >>> x_fit, y_fit, x_val, y_val = keras_guided.demo.split_validation(
        ...     x, y)
        >>> x_fit.shape[0], x_val.shape[0]
        (1221, 216)
    """
    from sklearn.model_selection import train_test_split

    x_fit, x_val, y_fit, y_val = train_test_split(
        x_train,
        y_train,
        test_size=_VALIDATION_SHARE,
        random_state=seed,
        stratify=y_train,
    )
    return x_fit, y_fit, x_val, y_val


def make_deterministic(seed):
    """Seeds Python, NumPy and the backend (`keras.utils.set_random_seed`)
    and, on the TensorFlow backend, turns on op determinism for the rest
    of the process (`tf.config.experimental.enable_op_determinism`)."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def build_model():
    """The demo CNN: two conv + BN + ReLU + pool blocks, a Dense head.

    Examples:
        >>> import keras_guided.demo
        >>> keras_guided.demo.build_model().count_params()
        36298
    """
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")
