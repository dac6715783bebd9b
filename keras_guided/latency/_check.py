"""The record of a latency target held as measured (`PruneReport.latency`).

`keras_guided.scoring`'s closed loop plans, times and re-aims; each timed
candidate is a `LatencyTry` (the ratio an `InterleavedTimer` measured),
and the loop's outcome a `LatencyCheck`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class LatencyTry:
    """One candidate of the closed loop.

    Attributes:
        aim: the share of the table's latency the plan was made for.
        measured: the candidate's measured share of the base (median of
            the interleaved rounds).
        spread: coefficient of variation of the per-round ratios.
        base_ms: the base's median ms in this comparison.
        candidate_ms: the candidate's median ms.
    """

    aim: float
    measured: float
    spread: float
    base_ms: float
    candidate_ms: float


@dataclasses.dataclass(frozen=True)
class LatencyCheck:
    """How a latency target held as measured (`PruneReport.latency`).

    Attributes:
        asked: the asked share of the base's measured latency (a count
            target in ms is divided by the base's measured ms).
        measured: the returned candidate's measured share.
        tolerance: the relative tolerance on `measured / asked - 1`.
        within: whether the returned candidate is within it.
        tries: every `LatencyTry`, in order.
        chosen: the index in `tries` of the returned candidate.
        reason: why the loop stopped outside the tolerance (`None` when
            within).
    """

    asked: float
    measured: float
    tolerance: float
    within: bool
    tries: tuple
    chosen: int
    reason: str = None

    def summary(self):
        """One line: asked, measured, tolerance and tries."""
        verdict = "within" if self.within else "NOT within"
        tries = (
            "1 try" if len(self.tries) == 1 else (f"{len(self.tries)} tries")
        )
        return (
            f"Latency as measured: {self.measured:.3f} of the base "
            f"(asked {self.asked:.3f}, {verdict} {self.tolerance:.0%}) "
            f"after {tries}" + (f"; {self.reason}" if self.reason else "") + "."
        )
