"""Strength schedules for `GuidedPruning`: small callables `epoch -> strength`.

Epochs count from 0. The callback evaluates the schedule at the start of
each epoch and writes the value into a `keras.Variable`, so the compiled
train step reads it without retracing. The budget schedule is not here: it
is a controller on the live network (`keras_guided.budget`), not a
function of the epoch.
"""

import dataclasses

NAMES = ("constant", "warmup", "ramp")


@dataclasses.dataclass(frozen=True)
class Constant:
    """`strength` at every epoch."""

    strength: float

    def __call__(self, epoch):
        return self.strength


@dataclasses.dataclass(frozen=True)
class Warmup:
    """`strength * min(1, epoch / epochs)`: 0 at the first epoch, full
    strength from `epochs` on."""

    strength: float
    epochs: int

    def __call__(self, epoch):
        return self.strength * min(1.0, epoch / self.epochs)


@dataclasses.dataclass(frozen=True)
class Ramp:
    """`strength * (1 + epoch)`: rising until a target holds it."""

    strength: float

    def __call__(self, epoch):
        return self.strength * (1 + epoch)


def get(schedule, strength, warmup_epochs):
    """The callable for `schedule`: a name in `NAMES`, or a callable
    `epoch -> strength`, returned as is."""
    if callable(schedule):
        return schedule
    if schedule == "warmup":
        return Warmup(strength, warmup_epochs)
    if schedule == "ramp":
        return Ramp(strength)
    if schedule == "constant":
        return Constant(strength)
    raise ValueError(
        f"`schedule` must be one of {list(NAMES)} or a callable "
        f"`epoch -> strength`. Received: schedule={schedule!r}"
    )
