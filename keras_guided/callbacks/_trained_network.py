"""`trained_network`: the network `GuidedPruning` prunes when `fit` runs
on a model (a distiller's student, else the model)."""

import keras

from keras_guided import distill as distill_lib


def trained_network(model):
    """The network whose units `GuidedPruning` prunes when `fit` runs on
    `model`: the student of a distiller (`keras_guided.Distiller` or
    `keras.distillation.Distiller`), else `model` itself.

    Examples:
        >>> import keras, keras_guided
        >>> teacher = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(3)])
        >>> student = keras.Sequential([keras.Input((4,)),
        ...     keras.layers.Dense(3)])
        >>> distiller = keras_guided.Distiller(student, teacher)
        >>> keras_guided.callbacks.trained_network(distiller) is student
        True
    """
    if isinstance(model, (distill_lib.Distiller, keras.distillation.Distiller)):
        return model.student
    return model
