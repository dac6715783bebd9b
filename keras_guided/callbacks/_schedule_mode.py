"""The schedule recipe of `GuidedPruning`: a strength per epoch from a
schedule, and an optional threshold target that, once reached, holds the
strength, releases it or stops training.

It is the counterpart of `BudgetMode` (the budget recipe): the callback
holds one of the two for a `fit` and hands it the epoch and the measured
value; neither knows about the other.
"""

from keras_guided import regularizers as regularizers_lib
from keras_guided import schedules as schedules_lib


class ScheduleMode:
    """Strength per epoch, and the threshold `target` of one `fit`.

    Args:
        schedule: a schedule name of `keras_guided.schedules` or a callable
            `epoch -> strength`.
        base_strength: the strength the schedule scales.
        warmup_epochs: epochs of the `"warmup"` schedule.
        target: `None`, or the value (a float fraction of the start value,
            or a count) at which the target is reached.
        on_target: `"hold"`, `"release"` or `"stop"`.
    """

    def __init__(self, schedule, base_strength, warmup_epochs, target,
                 on_target):
        self.schedule = schedule
        self.base_strength = base_strength
        self.warmup_epochs = warmup_epochs
        self.target = target
        self.on_target = on_target
        self.start_value = None
        self.reached = False
        self.held_strength = None

    def start(self, value):
        """The first epoch of a run: `value` is the measured start."""
        self.start_value = value
        self.reached = False
        self.held_strength = None

    def strength(self, epoch):
        """The strength for `epoch` (0-based)."""
        if self.reached and self.on_target == "hold":
            return self.held_strength
        if self.reached and self.on_target == "release":
            return 0.0
        value = schedules_lib.get(
            self.schedule, self.base_strength, self.warmup_epochs
        )(epoch)
        if callable(self.schedule):
            value = regularizers_lib.validate_strength(
                value, name="schedule(epoch)"
            )
        return value

    def epoch_end(self, measure, strength):
        """Checks the target after an epoch.

        Args:
            measure: callable returning the current value of the target
                metric (called only while the target is pending).
            strength: the strength in effect (held when reached).

        Returns:
            Whether training should stop (`on_target="stop"`, reached now).
        """
        if self.target is None or self.reached:
            return False
        goal = self.target
        if isinstance(goal, float):
            goal = goal * self.start_value
        if measure() > goal:
            return False
        self.reached = True
        self.held_strength = strength
        return self.on_target == "stop"

    def state(self):
        """What a resumed `fit` needs (JSON-serializable)."""
        return {"start_value": self.start_value, "reached": self.reached,
                "held_strength": self.held_strength}

    def restore(self, state):
        """Takes back `state()` of the run being resumed."""
        self.start_value = state["start_value"]
        self.reached = state["reached"]
        self.held_strength = state["held_strength"]
