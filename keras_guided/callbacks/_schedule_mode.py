"""The schedule recipe of `GuidedPruning`: a strength per epoch from a
schedule, and an optional threshold target that, once reached, holds the
strength, releases it or stops training.

It is the counterpart of `BudgetMode` (the budget recipe), with the same
interface: both are built from the `fit`'s `FitContext` (and its
`LiveMetrics`); the callback holds one of the two for a `fit`, asks it
for the strength at `begin_epoch`, hands it each batch (`batch_end`) and each
epoch's logs (`end_epoch`, which says whether to stop), and saves and
restores its `state()`; neither knows about the other.
"""

from keras import ops

from keras_guided import regularizers as regularizers_lib
from keras_guided import schedules as schedules_lib


class ScheduleMode:
    """Strength per epoch, and the threshold `target` of one `fit`.

    Args:
        context: the `FitContext` of this `fit`: the options the recipe
            reads (`schedule`, a schedule name of `keras_guided.schedules`
            or a callable `epoch -> strength`; `base_strength`, the
            strength it scales; `warmup_epochs`; `target`, `None` or the
            value, a float fraction of the start value or a count, at
            which the target is reached; `on_target`, `"hold"`,
            `"release"` or `"stop"`; `target_metric`), the plan variables
            (`values`) and the `strength` variable (the strength held once
            the target is reached).
        metrics: the `LiveMetrics` of this `fit`.
    """

    def __init__(self, context, metrics):
        self.context = context
        self.options = context.options
        self.metrics = metrics
        self.start_value = None
        self.reached = False
        self.held_strength = None

    def begin_epoch(self, epoch, first):
        """The strength for `epoch` (0-based); `first` when the epoch
        starts the run (not a resumed one): the start value is measured."""
        if first:
            self.start_value = self._measure()
            self.reached = False
            self.held_strength = None
        if self.reached and self.options.on_target == "hold":
            return self.held_strength
        if self.reached and self.options.on_target == "release":
            return 0.0
        value = schedules_lib.get(
            self.options.schedule,
            self.options.base_strength,
            self.options.warmup_epochs,
        )(epoch)
        if callable(self.options.schedule):
            value = regularizers_lib.validate_strength(
                value, name="schedule(epoch)"
            )
        return value

    def batch_end(self, batch, epoch_steps):
        """Nothing to do per batch (the budget recipe steers here)."""

    def end_epoch(self, epoch, logs):
        """Checks the target after an epoch (the live metric is measured
        only while the target is pending; the strength in effect is held
        once it is reached).

        Returns:
            Whether training should stop (`on_target="stop"`, reached now).
        """
        if self.options.target is None or self.reached:
            return False
        goal = self.options.target
        if isinstance(goal, float):
            goal = goal * self.start_value
        if self._measure() > goal:
            return False
        self.reached = True
        self.held_strength = float(
            ops.convert_to_numpy(self.context.strength.value)
        )
        return self.options.on_target == "stop"

    def state(self):
        """What a resumed `fit` needs (JSON-serializable)."""
        return {
            "start_value": self.start_value,
            "reached": self.reached,
            "held_strength": self.held_strength,
        }

    def restore(self, state):
        """Takes back `state()` of the run being resumed."""
        self.start_value = state["start_value"]
        self.reached = state["reached"]
        self.held_strength = state["held_strength"]

    def _measure(self):
        """The live value of the target metric."""
        live, _ = self.metrics.live_units(self.context.values())
        return self.metrics.value(self.options.target_metric, live)
