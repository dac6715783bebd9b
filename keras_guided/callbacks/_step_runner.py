"""Running the proximal step of `GuidedPruning`: inside the compiled train
step where Keras lets us (TensorFlow and JAX, through the optimizer hook of
`keras_guided._keras_adapter`), else from Python between batches.

The step itself is the pure `keras_guided.proximal.shrink`. A `StepRunner`
compiles it for one plan on one model, owns the step's state (the dead
mask and the budget guard's allowed deaths, floor and held units), reads
and writes the variables, and puts the hook on and off the optimizer for
one `fit`. At each epoch's start it marks the units whose weights are
zero as dead where the weights decide (`begin_epoch`). Where the step runs
from Python it counts the optimizer steps of an epoch (`batch_end`,
`end_epoch`) and takes one step with the shrinkage of all of them every
`proximal_every` steps. It is built once per model, before any `fit`'s
context, from the validated options; it reads the strength and
unit-weight variables it is given, and each `fit`'s `FitContext` holds it
as its `runner`.
"""

import keras
import numpy as np
from keras import ops

from keras_guided import _keras_adapter as adapter
from keras_guided import proximal


class StepRunner:
    """The compiled proximal step of one plan and its state.

    Args:
        model: the model being trained (its optimizer takes the hook).
        plan: the `GroupPlan` for that model.
        strength: the float32 strength variable (one per callback, kept
            across its `fit`s).
        unit_weights: the float32 unit-weight variable (`g_u sqrt(p_u)`).
        guarded: whether the budget's death guard is on (a budget target).
        keep_dead: whether dead units are re-zeroed after every step.
        penalty: whether `mode="penalty"`: the loss carries the penalty and
            the step only keeps dead units at zero. Defaults to `False`.
        proximal_every: the optimizer steps per step from Python. Defaults
            to `1`.
    """

    def __init__(
        self,
        model,
        plan,
        strength,
        unit_weights,
        guarded,
        keep_dead,
        penalty=False,
        proximal_every=1,
    ):
        self.model = model
        self.plan = plan
        self.strength = strength
        self.unit_weights = unit_weights
        self.guarded = guarded
        self.keep_dead = keep_dead
        self.penalty = penalty
        self.proximal_every = proximal_every
        # Per fit: where the step runs, whether a unit is known dead, and
        # the optimizer steps since the last step from Python.
        self.in_step = False
        self.known_dead = False
        self._pending = 0
        self._last_batch = -1
        self.entries = plan.tensor_entries(plan.entries)
        per_unit = np.zeros(plan.num_segments, dtype="float32")
        self.dead = _state(per_unit, "guided_dead")
        self.allowed = _state(3e38, "guided_allowed")
        self.floor = _state(per_unit, "guided_floor")
        self.held = _state(per_unit, "guided_held")
        self._unhook = None
        self._plain_function = None
        self._hooked_function = None  # (plain train function, hooked one)
        self._step = self._compile()

    @property
    def pending_steps(self):
        """Optimizer steps since the last step from Python (resume state:
        a state saved before the epoch's end carries them)."""
        return self._pending

    @pending_steps.setter
    def pending_steps(self, steps):
        self._pending = int(steps)

    @property
    def hooked(self):
        """Whether the step hook is on the optimizer."""
        return self._unhook is not None

    def start(self, in_step):
        """Start of `fit`: no unit dead, no death limit, none held; the step
        runs inside the compiled train step when `in_step` (the hook goes
        on the optimizer), else from Python after each batch."""
        zeros = np.zeros(self.plan.num_segments, dtype="float32")
        self.dead.assign(zeros)
        self.allowed.assign(3e38)
        self.held.assign(zeros)
        self.known_dead = False
        self.in_step = in_step
        self._pending = 0
        self._last_batch = -1
        if in_step:
            self.install_hook()

    def begin_epoch(self, first, values):
        """Start of an epoch: no optimizer step waits for its shrinkage.
        At the first epoch of a run (`first`, not a resumed one) the
        weights decide which units are dead, and at every epoch in penalty
        mode: its zeros are only looked for at epoch boundaries, to keep
        the training loop free of syncs.

        Args:
            first: whether the epoch starts the run.
            values: callable returning the plan variables as NumPy arrays.
        """
        self._pending = 0
        self._last_batch = -1
        if first or self.penalty:
            self.mark_dead_from_weights(values)

    def batch_end(self, batch, epoch_steps):
        """After batch `batch` (0-based) of an epoch of `epoch_steps`
        batches (`None` when unknown): from Python, the step of the
        optimizer steps since the last one, every `proximal_every` steps
        and at the last batch of the epoch."""
        if self.in_step:
            return
        self._pending += max(batch - self._last_batch, 1)
        self._last_batch = batch
        last = epoch_steps is not None and batch >= epoch_steps - 1
        if self._pending >= self.proximal_every or last:
            self._flush()

    def end_epoch(self):
        """End of an epoch (of unknown length, maybe): the step of the
        optimizer steps still waiting."""
        if self._pending and not self.in_step:
            self._flush()

    def _flush(self):
        steps, self._pending = self._pending, 0
        if not steps or (self.penalty and not self.known_dead):
            return
        self.run(0.0 if self.penalty else float(steps))

    def mark_dead_from_weights(self, values):
        """Adds the units whose weights are all zero to the dead mask (none
        with `keep_dead=False`); sets and returns `known_dead`, whether any
        unit is dead.

        Args:
            values: callable returning the plan variables as NumPy arrays.
        """
        plan = self.plan
        dead = np.zeros(plan.num_segments, dtype="float32")
        if self.keep_dead and plan.num_units:
            norms = proximal.numpy_group_norms(
                values(), plan.entries, plan.num_segments
            )
            dead[:-1] = norms[:-1] == 0
        dead_mask = self.dead
        dead = np.maximum(dead, ops.convert_to_numpy(dead_mask.value))
        dead_mask.assign(dead)
        self.known_dead = bool(dead.any())
        return self.known_dead

    def _compile(self):
        """The pure step for this plan, and its compiled form for the calls
        from Python (landing, and the fallback after each batch)."""
        plan = self.plan
        layout = proximal.StepLayout(
            entries=self.entries,
            num_segments=plan.num_segments,
            is_unit=ops.convert_to_tensor(plan.is_unit),
            keep_dead=self.keep_dead,
            group_ids=(
                ops.convert_to_tensor(plan.group_ids, dtype="int32")
                if self.guarded
                else None
            ),
            num_groups=len(plan.groups),
        )

        def pure(values, state, threshold, unit_weights):
            return proximal.shrink(
                values, state, threshold, unit_weights, layout
            )

        self._pure = pure
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            optimizer = self.model.optimizer

            def step(steps):
                lr = ops.cast(adapter.step_learning_rate(optimizer), "float32")
                self._assign_step(lr * steps)

            # The step has no tensor-dependent Python control flow (its loops
            # run over a fixed list of variables at trace time): skip
            # AutoGraph, which otherwise warns that it cannot transform it.
            return tf.function(step, reduce_retracing=True, autograph=False)
        if backend == "jax":
            import jax

            return jax.jit(pure)
        return pure

    def _assign_step(self, rate):
        """Reads the variables, takes one step with threshold
        `rate * strength` and writes the results back. Traced into the
        train step (or the `tf.function` above); on JAX inside the train
        step's stateless scope, which carries the step's state."""
        variables = self.plan.variables
        # Only the penalized weights (all trainable) are read and written:
        # inside JAX's optimizer step the others (BatchNormalization moving
        # statistics) are not part of the state.
        penalized = {index for index, _, _, _ in self.entries}
        threshold = rate * ops.cast(self.strength.value, "float32")
        values, state = self._pure(
            [
                v.value if i in penalized else None
                for i, v in enumerate(variables)
            ],
            self._state(),
            threshold,
            self.unit_weights.value,
        )
        for index in sorted(penalized):
            variables[index].assign(values[index])
        self._set_state(state)

    def _state(self):
        return proximal.ProximalState(
            dead=self.dead.value,
            allowed=self.allowed.value,
            held=self.held.value,
            floor=self.floor.value,
        )

    def _set_state(self, state):
        self.dead.assign(state.dead)
        if self.guarded:
            self.allowed.assign(state.allowed)
            self.held.assign(state.held)

    def install_hook(self):
        """Puts the step inside the compiled train step for this `fit`."""
        model = self.model
        optimizer = model.optimizer
        penalty = self.penalty

        def hook(learning_rate):
            # Penalty mode: the loss carries the penalty; the step only
            # keeps dead units at zero (threshold 0).
            self._assign_step(0.0 if penalty else learning_rate)

        state = [
            self.strength,
            self.unit_weights,
            self.dead,
            self.allowed,
            self.floor,
            self.held,
        ]
        removers = [
            adapter.carry_state(optimizer, state),
            adapter.after_optimizer_step(optimizer, hook),
        ]

        def unhook():
            for remove in reversed(removers):
                remove()

        self._unhook = unhook
        # The train function is built (not yet traced) before
        # on_train_begin. Keep it for the fits without this callback, and
        # reuse the hooked one while the model keeps that plain function
        # (no retracing per fit; a `compile` makes a new plain function).
        plain = model.train_function
        cached = self._hooked_function
        if cached is not None and cached[0] is plain and plain is not None:
            model.train_function = cached[1]
        else:
            model.make_train_function(force=True)
        self._plain_function = plain

    def remove_hook(self):
        sync(self.model)
        unhook, self._unhook = self._unhook, None
        unhook()
        # The compiled train step holds the hook: put the plain one back, so
        # a later fit without this callback trains plainly.
        model = self.model
        plain, self._plain_function = self._plain_function, None
        if plain is not None:
            self._hooked_function = (plain, model.train_function)
            model.train_function = plain
        else:
            self._hooked_function = None
            model.make_train_function(force=True)

    def run(self, steps):
        """One step from Python (between batches)."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            self._step(ops.convert_to_tensor(float(steps), dtype="float32"))
            return
        # JAX: put the step's state back into the variables; the next step
        # reads the variables again because the state is marked synced.
        sync(self.model)
        lr = float(
            ops.convert_to_numpy(
                adapter.step_learning_rate(self.model.optimizer)
            )
        )
        strength = float(ops.convert_to_numpy(self.strength.value))
        threshold = lr * steps * strength
        variables = self.plan.variables
        values, state = self._step(
            [v.value for v in variables],
            self._state(),
            ops.convert_to_tensor(threshold, dtype="float32"),
            self.unit_weights.value,
        )
        for variable, value in zip(variables, values):
            variable.assign(value)
        self._set_state(state)


def sync(model):
    """On JAX, writes the train loop's state back into the variables
    (model and callback state), so that Python reads and writes them."""
    if model is not None and keras.backend.backend() == "jax":
        model.jax_state_sync()


def _state(value, name):
    """A float32 state variable of the step (not trained)."""
    return keras.Variable(value, trainable=False, dtype="float32", name=name)
