"""Unit-axis arithmetic on numpy arrays, written once.

A weight's units lie along one axis, or along a contiguous tuple of axes
flattened row-major into one unit axis (a depthwise kernel's input channel
times depth multiplier, `(-2, -1)`). Every part of the package that reads
or rewrites the units of a weight goes through these primitives:

* `normalize_axes`: an axis (int or contiguous tuple, negative allowed) as
  sorted non-negative axes, with the errors a user sees for a bad one;
* `gather_units`: one row per unit, every entry of the unit in it;
* `take_units`: keep some units (with `block` entries each) of an array;
* `zero_units`: zero some positions along the unit axis.

`keras_guided.units` builds on `normalize_axes` for the backend-tensor
views (`unit_axis_length`, `unit_matrix`, `unit_norms`). This module knows
no layer and imports nothing of the package, so the lowest modules (the
cost model, the plans, the rules) can use it.
"""

import numpy as np


def normalize_axes(rank, axis):
    """Returns `axis` as a sorted tuple of non-negative contiguous axes.

    Args:
        rank: the rank of the weight.
        axis: an int or a tuple (or list) of contiguous ints, negative ones
            counted from the end.

    Raises:
        ValueError: for an empty, non-integer, out-of-range or
            non-contiguous `axis`.
    """
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    if not axes:
        raise ValueError("`axis` must name at least one axis. Received: ()")
    resolved = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise ValueError(
                "`axis` must be an int or a tuple of ints. "
                f"Received: axis={axis!r}"
            )
        if not -rank <= a < rank:
            raise ValueError(
                f"`axis`={axis!r} is out of range for a weight of rank {rank}. "
                f"Use an axis in [-{rank}, {rank - 1}]."
            )
        resolved.append(int(a) % rank)
    resolved = tuple(sorted(resolved))
    if resolved != tuple(range(resolved[0], resolved[-1] + 1)):
        raise ValueError(
            f"`axis`={axis!r} must name contiguous axes (they are flattened "
            "into one unit axis). Received non-contiguous axes."
        )
    return resolved


def _units_first(array, axes):
    """`array` with the unit axes moved to the front, and the order of
    axes that does it."""
    rest = [a for a in range(array.ndim) if a not in axes]
    order = list(axes) + rest
    return np.transpose(array, order), order


def gather_units(array, axis, positions):
    """Returns `(num_units, n)`: each row holds every entry of one unit.

    Args:
        array: numpy array of a weight.
        axis: the unit axis (int, or contiguous tuple flattened row-major).
        positions: int array `(num_units, k)` of positions along `axis`.

    Examples:
        >>> import numpy as np
        >>> from keras_guided import _axes
        >>> kernel = np.arange(6.0).reshape(2, 3)
        >>> _axes.gather_units(kernel, -1, np.array([[0], [2]])).tolist()
        [[0.0, 3.0], [2.0, 5.0]]
    """
    array = np.asarray(array)
    axes = normalize_axes(array.ndim, axis)
    moved, _ = _units_first(array, axes)
    length = int(np.prod([array.shape[a] for a in axes]))
    moved = moved.reshape(length, -1)
    picked = moved[np.asarray(positions, dtype=np.int64)]
    return picked.reshape(picked.shape[0], -1)


def unit_blocks(array, axis, positions, max_entries=1 << 21):
    """Yields `(start, rows)`: `gather_units(array, axis, positions)` in
    blocks of consecutive units, `rows` its rows `start, start + 1, ...`
    (at most `max_entries` entries a block, and one unit at least), so a
    reduction over each row sees the same values in the same order while
    the whole matrix is never copied at once.

    Examples:
        >>> import numpy as np
        >>> from keras_guided import _axes
        >>> kernel = np.arange(6.0).reshape(2, 3)
        >>> [(start, rows.tolist()) for start, rows in _axes.unit_blocks(
        ...     kernel, -1, np.array([[0], [1], [2]]), max_entries=4)]
        [(0, [[0.0, 3.0], [1.0, 4.0]]), (2, [[2.0, 5.0]])]
    """
    array = np.asarray(array)
    axes = normalize_axes(array.ndim, axis)
    moved, _ = _units_first(array, axes)
    length = int(np.prod([array.shape[a] for a in axes]))
    moved = moved.reshape(length, -1)
    positions = np.asarray(positions, dtype=np.int64)
    per_unit = max(1, positions[:1].size * moved.shape[1])
    step = max(1, max_entries // per_unit)
    for start in range(0, len(positions), step):
        picked = moved[positions[start : start + step]]
        yield start, picked.reshape(picked.shape[0], -1)


def take_units(array, axis, kept, block=1):
    """Keeps the units `kept` along `axis` (int or contiguous tuple).

    Unit `c` owns positions `c * block ... c * block + block - 1`. With a
    tuple `axis` the axes are merged; the last of them (a depth multiplier)
    is split off again when whole blocks of it are kept.

    Examples:
        >>> import numpy as np
        >>> from keras_guided import _axes
        >>> _axes.take_units(np.arange(6), 0, [0, 2], block=2).tolist()
        [0, 1, 4, 5]
    """
    array = np.asarray(array)
    kept = np.asarray(kept, dtype=np.int64)
    if block != 1:
        kept = (kept[:, None] * block + np.arange(block)[None, :]).ravel()
    if isinstance(axis, (tuple, list)):
        axes = normalize_axes(array.ndim, axis)
        shape = array.shape
        merged = array.reshape(shape[: axes[0]] + (-1,) + shape[axes[-1] + 1 :])
        taken = np.take(merged, kept, axis=axes[0])
        inner = shape[axes[-1]]
        if taken.shape[axes[0]] % inner == 0:
            return taken.reshape(
                shape[: axes[0]] + (-1, inner) + shape[axes[-1] + 1 :]
            )
        return taken
    return np.take(array, kept, axis=axis)


def zero_units(array, axis, positions):
    """A copy of `array` with `positions` along the unit axis set to 0.

    Examples:
        >>> import numpy as np
        >>> from keras_guided import _axes
        >>> _axes.zero_units(np.ones((2, 3)), -1, [1]).tolist()
        [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]
    """
    array = np.array(array)
    axes = normalize_axes(array.ndim, axis)
    moved, order = _units_first(array, axes)
    moved_shape = moved.shape
    flat = moved.reshape(-1, *moved_shape[len(axes) :]).copy()
    flat[np.asarray(positions, dtype=np.int64)] = 0
    return np.transpose(flat.reshape(moved_shape), np.argsort(order))
