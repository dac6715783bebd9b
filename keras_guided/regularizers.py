"""`GuidedRegularizer`: the guided penalty on one kernel."""

import math

import keras
import numpy as np
from keras import ops

from keras_guided import guidance as guidance_lib
from keras_guided import units as units_lib

PACKAGE = "keras_guided"


def validate_strength(strength, name="strength"):
    """Returns `strength` as a float, or raises a clear `ValueError`."""
    return guidance_lib.non_negative_float(strength, name)


def validate_norm(norm):
    """Returns `norm` if it is a known norm, or raises a clear `ValueError`."""
    if norm not in units_lib.NORMS:
        raise ValueError(
            f"`norm` must be one of {list(units_lib.NORMS)}. "
            f"Received: norm={norm!r}"
        )
    return norm


def _validate_axis(axis):
    if isinstance(axis, list):
        axis = tuple(axis)
    items = axis if isinstance(axis, tuple) else (axis,)
    if not items or any(
        isinstance(a, bool) or not isinstance(a, (int, np.integer))
        for a in items
    ):
        raise ValueError(
            "`axis` must be an int or a non-empty tuple of contiguous ints. "
            f"Received: axis={axis!r}"
        )
    return (
        tuple(int(a) for a in items) if isinstance(axis, tuple) else int(axis)
    )


def unit_penalties(weight, axis, norm):
    """Per-unit penalty terms `phi(W_u)` of one weight, before guidance.

    `"l1"`: sum of |w|. `"l2"`: sum of w**2. `"group"`: `sqrt(p) * ||W_u||_2`
    with `p` the number of weights in the unit (the group-lasso convention of
    Yuan & Lin, 2006), so a group penalty has the same scale as an L1 penalty
    on the same weights and `strength` transfers between layers of different
    fan-in.
    """
    norms = units_lib.unit_norms(weight, axis=axis, norm=norm)
    if norm != "group":
        return norms
    shape = tuple(weight.shape)
    per_unit = int(np.prod(shape)) // units_lib.unit_axis_length(shape, axis)
    return norms * math.sqrt(per_unit)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GuidedRegularizer(keras.regularizers.Regularizer):
    """Guided structured penalty on the units of one weight.

    `penalty = strength * sum_u g_u * phi(W_u)`, where `W_u` is the slice of
    the weight that belongs to unit `u` (a Dense column, a Conv filter) and
    `g_u` the unit's guidance coefficient (mean 1 over the layer).

    `phi` by `norm`:
    * `"group"` (guided group lasso, the structured one):
      `sqrt(p) * ||W_u||_2`, with `p` the weights per unit;
    * `"l1"` (guided L1): `sum |W_u|`;
    * `"l2"` (guided L2): `sum W_u**2`.

    `guidance="uniform"` gives the plain baselines (group lasso, L1, L2).
    Units with large coefficients are pushed to zero first and can then be
    cut by `keras_guided.prune_model`.

    The strength lives in a `keras.Variable`, so changing `strength` during
    `fit` (e.g. from a callback) takes effect in the compiled train step on
    the TensorFlow backend. On JAX the compiled step keeps the old value until
    it is rebuilt: change it with `keras_guided.regularizers.set_strength`,
    which works on every backend.

    Args:
        strength: non-negative float, the penalty weight. Defaults to `1e-3`.
        norm: `"group"`, `"l1"` or `"l2"`. Defaults to `"group"`.
        guidance: `"linear"`, `"exponential"`, `"uniform"`, a sequence of
            per-unit coefficients or a `keras_guided.guidance.Guidance`.
            Defaults to `"linear"`.
        axis: the unit axis of the weight. `-1` (default) for Dense, Conv and
            SeparableConv pointwise kernels, `-2` for Conv*Transpose,
            `(-2, -1)` for DepthwiseConv kernels (input channel x depth
            multiplier).

    Examples:
        >>> import keras, keras_guided
        >>> layer = keras.layers.Dense(
        ...     8, kernel_regularizer=keras_guided.GuidedRegularizer(
        ...         strength=1e-3, norm="group", guidance="linear"))
        >>> y = layer(keras.ops.ones((2, 4)))
        >>> len(layer.losses)
        1

    References:
        Rafid & Sandu, "Neural Network Reduction with Guided Regularizers",
        arXiv:2305.18448, 2023; "Guided Regularizers for Structured Reduction
        of Neural Networks", 2025.
    """

    def __init__(self, strength=1e-3, norm="group", guidance="linear", axis=-1):
        strength = validate_strength(strength)
        self.norm = validate_norm(norm)
        self.guidance = guidance_lib.get(guidance)
        self.axis = _validate_axis(axis)
        self._strength = keras.Variable(
            strength,
            dtype="float32",
            trainable=False,
            name="guided_strength",
        )
        self._coefficients = {}

    @property
    def strength(self):
        """The current strength as a Python float (settable during `fit`)."""
        return float(ops.convert_to_numpy(self._strength.value))

    @strength.setter
    def strength(self, value):
        self._strength.assign(validate_strength(value))

    @property
    def strength_variable(self):
        """The `keras.Variable` that the penalty reads the strength from."""
        return self._strength

    def coefficients(self, num_units):
        """Guidance coefficients for `num_units` units (mean 1), cached."""
        if num_units not in self._coefficients:
            self._coefficients[num_units] = self.guidance(num_units)
        return self._coefficients[num_units]

    def __call__(self, x):
        shape = tuple(x.shape)
        try:
            num_units = units_lib.unit_axis_length(shape, self.axis)
        except ValueError as error:
            raise ValueError(
                f"GuidedRegularizer(axis={self.axis!r}) cannot be applied to "
                f"a weight of shape {shape}: {error}"
            ) from None
        coefficients = ops.convert_to_tensor(
            self.coefficients(num_units), dtype=x.dtype
        )
        phi = unit_penalties(x, self.axis, self.norm)
        strength = ops.cast(self._strength, x.dtype)
        return strength * ops.sum(coefficients * phi)

    def get_config(self):
        axis = list(self.axis) if isinstance(self.axis, tuple) else self.axis
        return {
            "strength": self.strength,
            "norm": self.norm,
            "guidance": guidance_lib.serialize(self.guidance),
            "axis": axis,
        }

    def __repr__(self):
        return (
            f"GuidedRegularizer(strength={self.strength!r}, "
            f"norm={self.norm!r}, guidance={self.guidance!r}, "
            f"axis={self.axis!r})"
        )


def guided_regularizers(model):
    """Every `GuidedRegularizer` attached to a weight of `model`.

    Nested models included; a regularizer shared by several weights is
    listed once.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        ...     2, kernel_regularizer=keras_guided.GuidedRegularizer())])
        >>> len(keras_guided.regularizers.guided_regularizers(model))
        1
    """
    found = []
    for variable in model.weights:
        regularizer = getattr(variable, "regularizer", None)
        if isinstance(regularizer, GuidedRegularizer) and not any(
            regularizer is other for other in found
        ):
            found.append(regularizer)
    return found


def set_strength(model, strength):
    """Sets the strength of every `GuidedRegularizer` of `model`, live.

    Use it from your own callback to change the penalty during `fit`. The new
    value takes effect at the next train step on every backend: on
    TensorFlow the compiled step reads the strength variable; on JAX, where a
    variable outside the model's state is a constant of the compiled step, the
    train function is rebuilt (a retrace, so change the strength per epoch,
    not per batch).

    Args:
        model: a `keras.Model`.
        strength: non-negative float.

    Returns:
        The number of regularizers changed.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        ...     2, kernel_regularizer=keras_guided.GuidedRegularizer())])
        >>> keras_guided.regularizers.set_strength(model, 0.0)
        1
    """
    strength = validate_strength(strength)
    regularizers = guided_regularizers(model)
    changed = [r for r in regularizers if r.strength != strength]
    for regularizer in changed:
        regularizer.strength = strength
    if changed:
        refresh_train_function(model)
    return len(regularizers)


def refresh_train_function(model):
    """Makes a running `fit` see changed non-state variables (JAX only).

    On TensorFlow (and torch) the compiled step reads variables by reference,
    so nothing is needed. On JAX the step is rebuilt if it exists.
    """
    if keras.backend.backend() != "jax":
        return
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)
