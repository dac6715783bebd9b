"""Timing a candidate against its base, interleaved, in one process.

A latency measured once, alone, moves with whatever else the machine does:
another process on the next core, the clock, the cache. What a latency
target needs is a *ratio* (candidate over base), and a ratio is much
steadier than either time when both are timed in the same conditions. So
`InterleavedTimer.compare` times the two models in rounds, each round in
the order base, candidate, candidate, base (ABBA: a drift that is linear
over the round cancels in the ratio), and reports the median of the
per-round ratios. The spread of those ratios (coefficient of variation,
standard deviation over mean) says how far to trust it: above
`max_spread` a warning gives the number.

What times one model is injectable: `time_model(model)` prepares the model
once (the LiteRT default converts it as `export_tflite` does and allocates
an interpreter) and returns `run`, a function of no arguments giving the
ms of one timing (the LiteRT default: the min of `num_runs` invokes).
Tests pass synthetic timers with noise and drift.

The LiteRT default with one interpreter thread times the calling thread's
CPU time (`time.thread_time`), not the wall clock: the invoke runs on the
caller, so this is what the model costs while it has the core (memory and
cache contention from a neighbour included) without the time the
scheduler gave the core to other processes. On a loaded 2-core machine
MobileNetV2's min of 10 invokes moved between 14 and 58 ms on the wall
clock and between 7.1 and 7.4 ms in CPU time. With more threads the work
runs on worker threads, so the wall clock is used.
"""

import dataclasses
import warnings

import numpy as np

CLOCKS = ("auto", "cpu", "wall")


@dataclasses.dataclass(frozen=True)
class LatencyComparison:
    """One interleaved comparison of a candidate with its base.

    Attributes:
        ratio: the median over rounds of candidate ms over base ms.
        ratios: the per-round ratios (each round timed base, candidate,
            candidate, base).
        base_ms: the median over rounds of the base's ms.
        candidate_ms: the median over rounds of the candidate's ms.
        spread: coefficient of variation (standard deviation over mean)
            of `ratios`.
    """

    ratio: float
    ratios: tuple
    base_ms: float
    candidate_ms: float
    spread: float


class InterleavedTimer:
    """Times a candidate model against its base, interleaved, repeated.

    Each of `num_rounds` rounds times base, candidate, candidate, base; the
    ratio of a round is the candidate's two timings over the base's two,
    and the result is the median ratio over rounds. When the per-round
    ratios spread by more than `max_spread` (coefficient of variation) a
    warning says so with the number.

    Args:
        time_model: `time_model(model) -> run`, where `run()` returns the
            ms of one timing of `model`. Defaults to `None`: LiteRT, the
            model converted as `export_tflite` converts it (with
            `quantization`), `num_threads` interpreter threads, `run()` the
            min of `num_runs` invokes after a warm-up.
        num_rounds: rounds of base, candidate, candidate, base (>= 1).
            Defaults to 7.
        max_spread: the coefficient of variation of the per-round ratios
            above which a warning is raised (>= 0). Defaults to 0.05.
        quantization: the LiteRT export mode (`None`, `"dynamic"`,
            `"float16"`, `"int8"`); only without `time_model`. Defaults to
            `None`.
        num_threads: LiteRT interpreter threads; only without
            `time_model`. Defaults to 1.
        num_runs: invokes per timing; only without `time_model`. Defaults
            to 10.
        representative_data: int8 calibration inputs (random when `None`);
            only without `time_model`.
        clock: `"cpu"` (the calling thread's CPU time, see the module
            doc), `"wall"` (`time.perf_counter`) or `"auto"`: CPU time with
            one thread, the wall clock with more; only without
            `time_model`. Defaults to `"auto"`.

    Examples:
        >>> import itertools, keras, keras_guided
        >>> clock = itertools.count()
        >>> def time_model(model):  # synthetic: ms = params, slow drift
        ...     ms = model.count_params()
        ...     return lambda: ms * (1 + 1e-3 * next(clock))
        >>> timer = keras_guided.latency.InterleavedTimer(time_model)
        >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
        >>> half = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
        >>> round(timer.compare(base, half).ratio, 6)
        0.5
    """

    def __init__(
        self,
        time_model=None,
        num_rounds=7,
        max_spread=0.05,
        quantization=None,
        num_threads=1,
        num_runs=10,
        representative_data=None,
        clock="auto",
    ):
        if time_model is not None and not callable(time_model):
            raise ValueError(
                "`time_model` must be a callable `time_model(model) -> run` "
                "(`run()` returns the ms of one timing), or None for LiteRT."
                f" Received: time_model={time_model!r}"
            )
        _check_int("num_rounds", num_rounds, 1)
        _check_int("num_runs", num_runs, 1)
        _check_int("num_threads", num_threads, 1)
        if (
            isinstance(max_spread, bool)
            or not isinstance(max_spread, (int, float))
            or not max_spread >= 0
        ):
            raise ValueError(
                "`max_spread` must be a float >= 0 (a coefficient of "
                f"variation, e.g. 0.05). Received: max_spread={max_spread!r}"
            )
        if time_model is None:
            from keras_guided import export

            quantization = export.check_quantization(quantization)
        if clock not in CLOCKS:
            raise ValueError(
                f"`clock` must be one of {list(CLOCKS)}. Received: "
                f"clock={clock!r}"
            )
        if clock == "auto":
            clock = "cpu" if int(num_threads) == 1 else "wall"
        self.clock = clock
        self.time_model = time_model
        self.num_rounds = int(num_rounds)
        self.max_spread = float(max_spread)
        self.quantization = quantization
        self.num_threads = int(num_threads)
        self.num_runs = int(num_runs)
        self.representative_data = representative_data

    @classmethod
    def from_table(cls, table, **kwargs):
        """The LiteRT timer in the settings `table` was measured with
        (quantization, threads); `kwargs` override."""
        settings = table.settings
        quantization = settings.get("quantization")
        options = {
            "quantization": None if quantization == "float32" else quantization,
            "num_threads": settings.get("num_threads", 1),
        }
        options.update(kwargs)
        return cls(**options)

    def prepare(self, model):
        """`run` for `model`: a function of no arguments returning the ms
        of one timing."""
        if self.time_model is not None:
            run = self.time_model(model)
            if not callable(run):
                raise ValueError(
                    "`time_model(model)` must return a function of no "
                    "arguments giving the ms of one timing. Received: "
                    f"{type(run).__name__}"
                )
            return run
        from keras_guided.latency import _measure

        _measure.check_runtime()
        return _measure.model_runner(
            model,
            self.quantization,
            self.num_threads,
            self.num_runs,
            self.representative_data,
            self.clock,
        )

    def compare(self, base, candidate):
        """Interleaved `LatencyComparison` of `candidate` with `base`
        (models, or `run` functions from `prepare`)."""
        base_run = base if _is_run(base) else self.prepare(base)
        candidate_run = (
            candidate if _is_run(candidate) else self.prepare(candidate)
        )
        ratios, base_ms, candidate_ms = [], [], []
        for _ in range(self.num_rounds):
            first = float(base_run())
            middle = float(candidate_run()) + float(candidate_run())
            last = float(base_run())
            if not (first + last > 0 and middle >= 0):
                raise ValueError(
                    "A latency timing must be a positive number of ms. "
                    f"Received: base {first} and {last} ms, candidate "
                    f"{middle / 2} ms per timing."
                )
            ratios.append(middle / (first + last))
            base_ms.append((first + last) / 2)
            candidate_ms.append(middle / 2)
        ratios = np.asarray(ratios)
        mean = float(np.mean(ratios))
        spread = float(np.std(ratios) / mean) if mean > 0 else 0.0
        comparison = LatencyComparison(
            float(np.median(ratios)),
            tuple(float(r) for r in ratios),
            float(np.median(base_ms)),
            float(np.median(candidate_ms)),
            spread,
        )
        if spread > self.max_spread:
            warnings.warn(
                f"Unstable latency timing: the per-round ratios of candidate "
                f"to base spread by {spread:.1%} (coefficient of variation "
                f"over {self.num_rounds} rounds; max_spread="
                f"{self.max_spread:.1%}), so the measured share "
                f"{comparison.ratio:.3f} is uncertain. Time on a quieter "
                "machine or raise `num_rounds`.",
                stacklevel=2,
            )
        return comparison


def _is_run(value):
    return callable(value) and not hasattr(value, "layers")


def _check_int(name, value, low):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
    ):
        raise ValueError(
            f"`{name}` must be an int >= {low}. Received: {name}={value!r}"
        )
