"""Guidance coefficients: a prior over which units should die first.

A guidance scheme maps a unit count `n` to `n` non-negative, finite
coefficients `g_0 ... g_{n-1}`, normalized to mean 1 so that a regularizer's
`strength` means the same under every scheme. A unit with a larger `g_u` is
pushed harder towards zero. Rising coefficients (`"linear"`,
`"exponential"`) encode Occam's razor with an order: keep the first units,
cut from the end (Rafid & Sandu, arXiv:2305.18448).
"""

import math

import keras
import numpy as np

PACKAGE = "keras_guided"


def normalize_coefficients(values, name="guidance"):
    """Validates per-unit coefficients and rescales them to mean 1.

    Args:
        values: a 1-D sequence of numbers.
        name: the argument name used in error messages.

    Returns:
        A float64 numpy array with mean 1.

    Raises:
        ValueError: if the values are not 1-D, empty, negative, non-finite or
            all zero.

    Examples:
        >>> import keras_guided
        >>> keras_guided.guidance.normalize_coefficients([1, 3]).tolist()
        [0.5, 1.5]
    """
    try:
        array = np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a sequence of numbers. Received: {values!r}"
        ) from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1-D sequence of per-unit "
            f"coefficients. Received an array of shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"`{name}` coefficients must be finite. Received NaN or inf at "
            f"units {np.flatnonzero(~np.isfinite(array)).tolist()}."
        )
    if np.any(array < 0):
        raise ValueError(
            f"`{name}` coefficients must be non-negative. Received negative "
            f"values at units {np.flatnonzero(array < 0).tolist()}."
        )
    if not np.any(array > 0):
        raise ValueError(
            f"`{name}` coefficients must not be all zero (that disables the "
            "penalty; use strength=0.0 instead)."
        )
    return array / array.mean()


class Guidance:
    """Base class of guidance schemes.

    Subclasses implement `raw(num_units)`; `__call__` validates and
    normalizes the result to mean 1.

    Examples:
        >>> import keras_guided
        >>> class Reversed(keras_guided.guidance.Guidance):
        ...     def raw(self, num_units):
        ...         return list(range(num_units, 0, -1))
        >>> Reversed()(3).tolist()
        [1.5, 1.0, 0.5]
    """

    name = None

    def raw(self, num_units):
        raise NotImplementedError

    def __call__(self, num_units):
        if not isinstance(num_units, (int, np.integer)) or num_units < 1:
            raise ValueError(
                "`num_units` must be a positive int. "
                f"Received: num_units={num_units!r}"
            )
        return normalize_coefficients(self.raw(int(num_units)))

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and (
            self.get_config() == other.get_config()
        )

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package=PACKAGE)
class UniformGuidance(Guidance):
    """Every unit gets coefficient 1: plain group lasso / L1 / L2.

    Examples:
        >>> import keras_guided
        >>> keras_guided.UniformGuidance()(3).tolist()
        [1.0, 1.0, 1.0]
    """

    name = "uniform"

    def raw(self, num_units):
        return np.ones(num_units)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LinearGuidance(Guidance):
    """Coefficients rising linearly with the unit index.

    `g_u ∝ start + (end - start) * u / (n - 1)`, then normalized to mean 1.

    Args:
        start: raw coefficient of the first unit, >= 0. Defaults to `0.0`
            (the first unit is free).
        end: raw coefficient of the last unit, > 0. Defaults to `1.0`.

    Examples:
        >>> import keras_guided
        >>> keras_guided.LinearGuidance()(3).tolist()
        [0.0, 1.0, 2.0]
    """

    name = "linear"

    def __init__(self, start=0.0, end=1.0):
        self.start = non_negative_float(start, "start")
        self.end = non_negative_float(end, "end")
        if self.start == 0 and self.end == 0:
            raise ValueError(
                "`start` and `end` must not both be 0. Received: start=0.0, "
                "end=0.0"
            )

    def raw(self, num_units):
        if num_units == 1:
            return np.ones(1)
        return np.linspace(self.start, self.end, num_units)

    def get_config(self):
        return {"start": self.start, "end": self.end}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ExponentialGuidance(Guidance):
    """Coefficients rising exponentially with the unit index.

    `g_u ∝ exp(rate * u / (n - 1))`, then normalized to mean 1: the last unit
    is pushed `exp(rate)` times harder than the first.

    Args:
        rate: growth over the whole layer, >= 0. Defaults to `3.0`.

    Examples:
        >>> import keras_guided
        >>> g = keras_guided.ExponentialGuidance(rate=3.0)(4)
        >>> round(float(g[-1] / g[0]), 3)
        20.086
    """

    name = "exponential"

    def __init__(self, rate=3.0):
        self.rate = non_negative_float(rate, "rate")

    def raw(self, num_units):
        if num_units == 1:
            return np.ones(1)
        return np.exp(self.rate * np.arange(num_units) / (num_units - 1))

    def get_config(self):
        return {"rate": self.rate}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ExplicitGuidance(Guidance):
    """User-given coefficients, one per unit.

    Args:
        values: non-negative, finite, not all zero. Normalized to mean 1.

    Raises:
        ValueError: when called with a unit count other than `len(values)`.

    Examples:
        >>> import keras_guided
        >>> keras_guided.ExplicitGuidance([1, 1, 4])(3).tolist()
        [0.5, 0.5, 2.0]
    """

    name = "explicit"

    def __init__(self, values):
        self.values = normalize_coefficients(values).tolist()

    def raw(self, num_units):
        if num_units != len(self.values):
            raise ValueError(
                f"`guidance` has {len(self.values)} coefficients but the "
                f"weight has {num_units} units. Pass one coefficient per unit "
                f"({num_units} values)."
            )
        return np.asarray(self.values)

    def get_config(self):
        return {"values": list(self.values)}


class ScoreGuidance:
    """Guidance from importance scores: the less important a unit, the
    stronger its pull.

    Within each unit group, the coefficients of `scheme` are handed out
    by rank: the most important unit gets the smallest, the least
    important the largest, units with equal scores the mean of theirs
    (mean 1 per group, as every scheme). With
    `keras_guided.scoring.calibration_scores` this is a data-driven prior:
    the units that do least on the calibration data are pushed to zero
    first. Unlike the other schemes it holds one array per unit group of
    a model, so it goes to `keras_guided.GuidedPruning(guidance=...)`,
    which knows the groups, not to a single layer's `GuidedRegularizer`.
    With `GuidedPruning(uniform_blocks=True)` the repeated blocks' groups
    are merged by these scores (unit `j` of a merged group is the `j`-th
    most important unit of every block, each block's scores divided by
    their mean) and the merged units ranked by the sum of those.

    Args:
        scores: one array of non-negative scores per unit group, in the
            order of `keras_guided.find_unit_groups(model)` (the
            `on_unsupported` that `GuidedPruning` gets), as
            `keras_guided.scoring.calibration_scores` or
            `keras_guided.scoring.unit_scores` return.
        scheme: the coefficients handed out by rank: `"linear"`,
            `"exponential"` or a `Guidance`. Defaults to `"linear"`.

    Raises:
        ValueError: for scores that are not 1-D, non-negative and finite,
            or a bad `scheme`; when `GuidedPruning` starts, for scores of
            other unit groups.

    Examples:
        >>> import keras_guided
        >>> guidance = keras_guided.ScoreGuidance([[3.0, 1.0, 2.0]])
        >>> guidance.coefficients(0, 3).tolist()
        [0.0, 2.0, 1.0]
    """

    def __init__(self, scores, scheme="linear"):
        if isinstance(scores, (str, dict)) or not hasattr(scores, "__len__"):
            raise ValueError(
                "`scores` must be a list with one array of unit scores per "
                "unit group, e.g. keras_guided.scoring.calibration_scores("
                f"model, data). Received: {type(scores).__name__}"
            )
        self.scores = []
        for index, values in enumerate(scores):
            array = np.asarray(values, dtype="float64")
            if (
                array.ndim != 1
                or not array.size
                or not np.all(np.isfinite(array))
                or np.any(array < 0)
            ):
                raise ValueError(
                    "`scores` must hold non-empty 1-D arrays of non-negative"
                    f" finite scores. Received for group {index}: "
                    f"{array.tolist()!r:.80}"
                )
            self.scores.append(array)
        self.scheme = get(scheme)

    def coefficients(self, index, num_units):
        """The coefficients (mean 1) of the units of group `index`.

        Raises:
            ValueError: when the scores have no group `index` or another
                number of units for it.
        """
        if not 0 <= index < len(self.scores):
            raise ValueError(
                f"ScoreGuidance has scores for {len(self.scores)} unit "
                f"groups, but the model has group {index}. Compute the "
                "scores for this model with the `on_unsupported` that "
                "GuidedPruning gets."
            )
        scores = self.scores[index]
        if len(scores) != num_units:
            raise ValueError(
                f"ScoreGuidance has {len(scores)} scores for unit group "
                f"{index}, which has {num_units} units. Compute the scores "
                "for this model with the `on_unsupported` that "
                "GuidedPruning gets."
            )
        ranked = np.sort(self.scheme(num_units))
        coefficients = np.empty(num_units)
        coefficients[np.argsort(-scores, kind="stable")] = ranked
        _, tie, counts = np.unique(
            scores, return_inverse=True, return_counts=True
        )
        tie = tie.ravel()
        return np.bincount(tie, weights=coefficients)[tie] / counts[tie]

    def __repr__(self):
        return (
            f"ScoreGuidance(<{len(self.scores)} groups>, "
            f"scheme={self.scheme!r})"
        )


_BY_NAME = {
    cls.name: cls
    for cls in (UniformGuidance, LinearGuidance, ExponentialGuidance)
}


def get(identifier):
    """Returns a `Guidance` from a name, a sequence, a config or an instance.

    Args:
        identifier: `"uniform"`, `"linear"`, `"exponential"`, a sequence of
            per-unit coefficients, a `Guidance` instance, or the dict written
            by `serialize`.

    Returns:
        A `Guidance` instance.

    Raises:
        ValueError: for an unknown name or invalid coefficients.

    Examples:
        >>> import keras_guided
        >>> keras_guided.guidance.get("linear")
        LinearGuidance(start=0.0, end=1.0)
    """
    if isinstance(identifier, Guidance):
        return identifier
    if isinstance(identifier, ScoreGuidance):
        raise ValueError(
            "A ScoreGuidance holds coefficients for every unit group of a "
            "model: pass it to keras_guided.GuidedPruning(guidance=...). "
            "For one layer, pass its coefficients instead: "
            "guidance.coefficients(group_index, num_units)."
        )
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(
                f"Unknown guidance {identifier!r}. Expected one of "
                f"{sorted(_BY_NAME)}, a sequence of per-unit coefficients, "
                "or a keras_guided.guidance.Guidance instance."
            )
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            return keras.saving.deserialize_keras_object(identifier)
        raise ValueError(
            "A guidance dict must be a serialized Guidance (with "
            f"'class_name'). Received: {identifier!r}"
        )
    if callable(identifier):
        raise ValueError(
            "`guidance` must be a name, a sequence of coefficients or a "
            "keras_guided.guidance.Guidance instance. Received a callable "
            f"{identifier!r}: subclass Guidance and implement `raw` instead."
        )
    if isinstance(identifier, (list, tuple, np.ndarray)):
        return ExplicitGuidance(identifier)
    raise ValueError(
        "`guidance` must be one of 'uniform', 'linear', 'exponential', a "
        "sequence of per-unit coefficients or a Guidance instance. "
        f"Received: guidance={identifier!r}"
    )


def serialize(guidance):
    """Plain JSON form of a guidance: its name when it is a default scheme."""
    guidance = get(guidance)
    if guidance.name in _BY_NAME and guidance == _BY_NAME[guidance.name]():
        return guidance.name
    if isinstance(guidance, ExplicitGuidance):
        return list(guidance.values)
    return keras.saving.serialize_keras_object(guidance)


def non_negative_float(value, name):
    """Returns `value` as a float, or raises a `ValueError` naming `name`.

    The one check behind every non-negative finite argument of the package
    (strengths, guidance parameters).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"`{name}` must be a non-negative finite float. "
            f"Received: {name}={value!r}"
        )
    return float(value)
