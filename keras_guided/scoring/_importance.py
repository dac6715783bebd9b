"""Importance: a score per unit of every unit group.

Importance of a unit is the group norm of every weight tied to it,
sqrt(sum of w**2 over its producer and follower slices), divided by the
square root of the number of those weights when `normalize=True` (a root
mean square), so units of wide and narrow layers compare fairly. A dead
unit (every input weight of its producers zero) scores 0 in
`default_scores`: removing it is exact, so every plan removes it first.
"""

import numpy as np
from keras import ops

from keras_guided import units as units_lib
from keras_guided._axes import unit_blocks


def weight_value(layer, name):
    """The numpy value of the variable `name` of `layer`."""
    return ops.convert_to_numpy(units_lib.get_weight(layer, name).value)


def unit_scores(groups, normalize=True, include_consumers=False):
    """Importance of every unit of every group.

    Args:
        groups: `UnitGroup`s from `keras_guided.find_unit_groups`.
        normalize: divide each norm by sqrt(number of weights of the unit).
            Defaults to `True`.
        include_consumers: also count the consumers' input slices. Defaults
            to `False`.

    Returns:
        A list (one per group) of float arrays of length `num_units`.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((2,)),
        ...     keras.layers.Dense(2, kernel_initializer="ones",
        ...                        bias_initializer="ones"),
        ...     keras.layers.Dense(1)])
        >>> groups = keras_guided.find_unit_groups(model)
        >>> keras_guided.scoring.unit_scores(groups)[0].tolist()
        [1.0, 1.0]
    """
    roles = {"producer", "follower"}
    if include_consumers:
        roles.add("consumer")
    scores = []
    for group in groups:
        squares = np.zeros(group.num_units)
        counts = np.zeros(group.num_units)
        for slice_ in group.slices:
            if slice_.role not in roles:
                continue
            # Block by block: never a float64 copy of a whole weight.
            for start, rows in unit_blocks(
                weight_value(slice_.layer, slice_.weight),
                slice_.axis,
                slice_.positions,
            ):
                rows = rows.astype(np.float64)
                end = start + rows.shape[0]
                squares[start:end] += np.sum(np.square(rows), axis=1)
                counts[start:end] += rows.shape[1]
        norms = np.sqrt(squares)
        if normalize:
            norms = norms / np.sqrt(np.maximum(counts, 1))
        scores.append(norms)
    return scores


def dead_units(groups, tolerance=1e-8):
    """Units whose output does not depend on the input.

    A unit is dead when every input weight of its producers (kernel
    slices; biases excluded, they only add a constant that surgery folds
    into the consumers) is at most `tolerance` in absolute value.

    Args:
        groups: `UnitGroup`s.
        tolerance: largest |w| still counted as zero. Defaults to `1e-8`.

    Returns:
        A list (one per group) of boolean arrays of length `num_units`.

    Examples:
        >>> import keras, numpy as np, keras_guided
        >>> model = keras.Sequential([keras.Input((2,)),
        ...     keras.layers.Dense(2, kernel_initializer="zeros",
        ...                        bias_initializer="ones"),
        ...     keras.layers.Dense(1)])
        >>> groups = keras_guided.find_unit_groups(model)
        >>> [mask.tolist() for mask in keras_guided.scoring.dead_units(groups)]
        [[True, True], [False]]
    """
    masks = []
    for group in groups:
        dead = np.ones(group.num_units, dtype=bool)
        for slice_ in group.slices:
            if slice_.role != "producer":
                continue
            value = weight_value(slice_.layer, slice_.weight)
            if not units_lib.is_input_weight(slice_.weight, value.shape):
                continue  # a bias
            for start, rows in unit_blocks(
                value, slice_.axis, slice_.positions
            ):
                end = start + rows.shape[0]
                dead[start:end] &= (
                    np.max(np.abs(rows), axis=1, initial=0.0) <= tolerance
                )
        masks.append(dead)
    return masks


def default_scores(groups):
    """`unit_scores`, with 0 for dead units (removing them is exact)."""
    scores = unit_scores(groups)
    for group_scores, dead in zip(scores, dead_units(groups)):
        group_scores[dead] = 0.0
    return scores


def check_scores(scores, groups, name="importance"):
    """`scores` as one float64 array per group, checked against `groups`.

    Args:
        scores: a list (one per group, in the order of `groups`) of 1-D
            arrays of `num_units` non-negative finite scores.
        groups: the `UnitGroup`s they score.
        name: the argument named in error messages. Defaults to
            `"importance"`.

    Returns:
        A list of float64 arrays.

    Raises:
        ValueError: for another number of groups or of units in a group,
            or a negative or non-finite score.

    Examples:
        >>> import keras, keras_guided
        >>> model = keras.Sequential([keras.Input((2,)),
        ...     keras.layers.Dense(2), keras.layers.Dense(1)])
        >>> groups = keras_guided.find_unit_groups(model)
        >>> keras_guided.scoring.check_scores([[1, 2], [1]], groups)[0]
        array([1., 2.])
    """
    how = (
        "Compute them for the same model and unit groups, e.g. with "
        "keras_guided.scoring.calibration_scores(model, data, "
        "on_unsupported=...) and the on_unsupported that prune_model gets."
    )
    if isinstance(scores, (str, bytes, dict)) or not hasattr(scores, "__len__"):
        raise ValueError(
            f"`{name}` must be a list with one array of unit scores per "
            f"unit group ({len(groups)} groups). Received: "
            f"{type(scores).__name__}. {how}"
        )
    if len(scores) != len(groups):
        raise ValueError(
            f"`{name}` must have one array of unit scores per unit group: "
            f"{len(groups)} groups expected, received {len(scores)}. {how}"
        )
    checked = []
    for group, values in zip(groups, scores):
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is None or array.shape != (group.num_units,):
            shape = None if array is None else array.shape
            raise ValueError(
                f"`{name}` for group {group.index} (layers "
                f"{group.layers[:2]}) must hold {group.num_units} scores, "
                f"one per unit. Received: shape {shape}. {how}"
            )
        bad = np.flatnonzero(~np.isfinite(array) | (array < 0))
        if bad.size:
            raise ValueError(
                f"`{name}` scores must be non-negative and finite. Received "
                f"{array[bad[:3]].tolist()} in group {group.index} (layers "
                f"{group.layers[:2]}) at units {bad[:3].tolist()}."
            )
        checked.append(array)
    return checked
