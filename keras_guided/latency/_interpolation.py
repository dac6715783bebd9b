"""A latency table's curves: sampled grids made monotone, interpolated.

Between samples the latency is interpolated linearly along each count
(bilinearly on a grid), below the smallest sample extrapolated along the
first segment, never below 0; a grid is made non-decreasing in both counts
first (more channels are never faster; timer noise is).
"""

import numpy as np


def no_cost(dims):
    return 0.0


def monotone(ms):
    """The grid made non-negative and non-decreasing along both counts."""
    grid = np.maximum(np.asarray(ms, dtype="float64"), 0.0)
    grid = np.maximum.accumulate(grid, axis=0)
    grid = np.maximum.accumulate(grid, axis=1)
    return tuple(tuple(float(v) for v in row) for row in grid)


def interpolate(x, xs, ys):
    """Piecewise-linear `ys(x)`; below `xs[0]` along the first segment
    (proportional to `x` with one sample), above `xs[-1]` clamped."""
    xs = [float(v) for v in xs]
    if len(xs) == 1:
        return float(ys[0]) * float(x) / xs[0]
    if x >= xs[-1]:
        return float(ys[-1])
    segment = max(0, int(np.searchsorted(xs, x, side="right")) - 1)
    segment = min(segment, len(xs) - 2)
    x0, x1 = xs[segment], xs[segment + 1]
    y0, y1 = float(ys[segment]), float(ys[segment + 1])
    return max(y0 + (y1 - y0) * (float(x) - x0) / (x1 - x0), 0.0)
