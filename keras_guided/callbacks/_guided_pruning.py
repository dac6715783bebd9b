"""`GuidedPruning`: the callback's hooks, each delegating to the parts
(see `keras_guided.callbacks` for which part does what)."""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_guided import _keras_adapter as adapter
from keras_guided.callbacks import _context
from keras_guided.callbacks import _options
from keras_guided.callbacks import _penalty_mode
from keras_guided.callbacks import _resume
from keras_guided.callbacks import _setup
from keras_guided.callbacks import _step_runner
from keras_guided.callbacks._trained_network import trained_network


class GuidedPruning(keras.callbacks.Callback):
    """Applies guided group penalties to whole unit groups during `fit`.

    `penalty = strength * sum_u g_u * sqrt(p_u) * ||W_u||_2` over the unit
    groups (a unit's kernel slice and bias, the BatchNormalization gamma
    and beta after it, the consumers' input slices), with `g_u` the
    guidance coefficient and `p_u` the count of penalized weights. With a
    budget `target` a controller lands the live network on it, so that
    `keras_guided.prune_model(model)` then removes exactly the dead units;
    without one the strength follows `schedule`. `fit` on a distiller
    (`keras_guided.Distiller`, `keras.distillation.Distiller`) prunes its
    student. How each part works (the budget recipe, the modes, guidance,
    the logs, resuming, backends) is in
    [Concepts: how GuidedPruning works](concepts.md#how-guidedpruning-works).

    Args:
        strength: non-negative float, the penalty weight. Defaults to
            `None`: `1e-3`, or with a budget target, calibrated at the start
            of `fit` (a given value is then the controller's start).
        guidance: `"importance"` (budget targets only), `"linear"`,
            `"exponential"`, `"uniform"`, a
            `keras_guided.guidance.Guidance`, a
            `keras_guided.ScoreGuidance` (coefficients ranked by
            importance scores, e.g. from calibration data), a dict
            `{layer_name: scheme or coefficients}` (groups produced by
            unnamed layers are not penalized), or `"from_regularizers"`
            (coefficients of the `GuidedRegularizer` on each group's
            producer kernel; groups without one are not penalized).
            Defaults to `None`: `"importance"` with a budget target, else
            `"linear"`.
        mode: `"proximal"` or `"penalty"`. Defaults to `"proximal"`.
        schedule: `"budget"`, `"constant"`, `"warmup"`, `"ramp"` or a
            callable `epoch -> strength`. Defaults to `None`: `"budget"`
            with a dict `target`, else `"constant"`. With another schedule
            a dict `target` is only a threshold (see `on_target`).
        warmup_epochs: positive int, length of the `"warmup"` schedule.
            Defaults to `5`.
        cost: `None`, `"params"`, `"flops"` or `"latency"` (priced by
            `latency_table`). Defaults to `None`.
        adapt_every: `None` or a positive int (epochs). Defaults to `None`.
        keep_dead: whether dead units are kept at zero. Defaults to `True`.
        target: `None` or a budget in the grammar shared with
            `prune_model`: a dict with one key, `"units"`, `"params"`,
            `"flops"` or `"latency"` (needs `latency_table`), and a
            fraction to keep (float in `(0, 1]`) or a count (int; ms for
            latency). The older forms, a float fraction or an int count
            of `target_metric`, still work as thresholds and warn
            (deprecated). Defaults to `None`.
        target_metric: for the deprecated numeric `target`: `"units"`,
            `"params"`, `"flops"` or `"latency"`. Defaults to `"units"`.
        on_target: what to do once the target is reached: `"hold"` keeps the
            strength at its current value, `"release"` sets it to 0 (dead
            units stay dead, the rest fine-tunes), `"stop"` stops training.
            Defaults to `"hold"`.
        proximal_every: positive int. Take the proximal step every this
            many optimizer steps, with the shrinkage of all of them (a
            coarser step for less overhead; the last step of an epoch always
            takes it). Defaults to `1`.
        on_unsupported: passed to `keras_guided.graph.find_unit_groups`.
            Defaults to `"raise"`.
        target_epochs: the epochs of the path to a budget target
            (counted from the start of `fit`): a positive int, or a float
            for a path that ends within an epoch (`0.5`: halfway through
            the first; the rest of the `fit` trains the pruned widths).
            Defaults to `None`: two thirds of the `fit` epochs.
        latency_table: a `keras_guided.latency.LatencyTable` of the model
            (`keras_guided.latency.build_latency_table`), required by a
            latency target or `cost="latency"` and refused without one
            (an error, not a warning: a table that prices nothing is a
            mistake). The live network is priced as `prune_model` prices a
            latency target: a measured layer at the table's prediction for
            its kept channels, any other layer at its kept FLOPs times the
            table's ms per FLOP; the logs then hold `live_latency` (ms).
            The table is checked against the model at the start of `fit`.
            The callback is not serialized (it has no `get_config`), so it
            holds the table by reference only. Defaults to `None`.
        on_unreachable: what to do when a budget target cannot be reached
            by the prunable groups: `"raise"` a `ValueError` before the
            first step, or `"warn"` and prune as close as they allow.
            Defaults to `"raise"`.
        protected: a layer name or a list of them, as in `prune_model`:
            the unit groups those layers produce or carry are never
            penalized nor counted as removable (e.g.
            `protected=["self_attention"]` keeps a keras-hub decoder's
            heads, which its class cannot shrink). Names are checked
            against the model at the start of `fit`. Defaults to `()`.
        uniform_blocks: as in `prune_model`: in a stack of repeated
            composite blocks (one class, one config) the `j`-th most
            important unit of each kind (FFN units, heads) of every block
            is penalized as one unit, so all blocks keep the same widths
            and `prune_model(model)` after `fit` can rebuild a keras-hub
            model as its own class (with the heads protected). Defaults
            to `False`.

    Examples:
        >>> import keras, numpy as np, keras_guided
        >>> model = keras.Sequential([
        ...     keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        ...     keras.layers.Dense(2)])
        >>> model.compile("sgd", "mse")
        >>> pruning = keras_guided.GuidedPruning(strength=1e-2)
        >>> history = model.fit(np.ones((8, 8)), np.zeros((8, 2)), epochs=2,
        ...                     verbose=0, callbacks=[pruning])
        >>> history.history["live_units"][-1] <= 16
        True

        The budget recipe: keep 4 of the 16 hidden units.

        >>> budgeted = keras_guided.GuidedPruning(target={"units": 4})
        >>> history = model.fit(np.ones((8, 8)), np.zeros((8, 2)), epochs=3,
        ...                     verbose=0, callbacks=[budgeted])
        >>> history.history["live_units"][-1]
        4

        A latency budget (the table here is built with LiteRT timings):

        >>> table = keras_guided.latency.build_latency_table(
        ...     model, verbose=0)  # doctest: +SKIP
        >>> fast = keras_guided.GuidedPruning(
        ...     target={"latency": 0.5}, latency_table=table)  # doctest: +SKIP

    Raises:
        ValueError: for invalid arguments, a latency target or cost without
            `latency_table` (or a table without one), or (at the start of
            `fit`) a budget out of reach, a `latency_table` of another
            model or a guidance dict naming layers that produce no
            prunable group.

    References:
        Rafid & Sandu, "Neural Network Reduction with Guided Regularizers",
        arXiv:2305.18448, 2023. Zhu & Gupta, "To prune, or not to prune",
        2017 (the cubic path). Li et al., "Pruning Filters for Efficient
        ConvNets", ICLR 2017 (magnitude importance). Yuan & Lin, "Model
        selection and estimation in regression with grouped variables",
        2006 (group lasso).
    """

    def __init__(
        self,
        strength=None,
        guidance=None,
        mode="proximal",
        schedule=None,
        warmup_epochs=5,
        cost=None,
        adapt_every=None,
        keep_dead=True,
        target=None,
        target_metric="units",
        on_target="hold",
        proximal_every=1,
        on_unsupported="raise",
        target_epochs=None,
        latency_table=None,
        on_unreachable="raise",
        protected=(),
        uniform_blocks=False,
    ):
        super().__init__()
        options = _options.validate_options(
            strength=strength,
            guidance=guidance,
            mode=mode,
            schedule=schedule,
            warmup_epochs=warmup_epochs,
            cost=cost,
            adapt_every=adapt_every,
            keep_dead=keep_dead,
            target=target,
            target_metric=target_metric,
            on_target=on_target,
            proximal_every=proximal_every,
            on_unsupported=on_unsupported,
            target_epochs=target_epochs,
            latency_table=latency_table,
            on_unreachable=on_unreachable,
            protected=protected,
            uniform_blocks=uniform_blocks,
        )
        # The validated arguments, as attributes of the same names (read
        # into the fit's context at the start of each fit).
        self.mode = options.mode
        self.budget = options.budget
        self.schedule = options.schedule
        self.base_strength = options.base_strength
        self.target_epochs = options.target_epochs
        self.guidance = options.guidance
        self.warmup_epochs = options.warmup_epochs
        self.cost = options.cost
        self.proximal_every = options.proximal_every
        self.adapt_every = options.adapt_every
        self.keep_dead = options.keep_dead
        self.target = options.target
        self.target_metric = options.target_metric
        self.on_target = options.on_target
        self.latency_table = options.latency_table
        self.on_unsupported = options.on_unsupported
        self.on_unreachable = options.on_unreachable
        self.protected = options.protected
        self.uniform_blocks = options.uniform_blocks
        self._strength = keras.Variable(
            0.0, dtype="float32", trainable=False, name="guided_strength"
        )
        # Per model, reused by the next fit on it: the groups, the step.
        self._cache_key = None
        self._plan = None
        self._runner = None
        # Per fit, set in on_train_begin: what the parts read, the parts.
        self._context = None
        self._parts = None
        self._restored = None  # (header, arrays) read with the weights

    # ------------------------------------------------------------ state

    @property
    def strength(self):
        """The strength in effect now (a Python float)."""
        _step_runner.sync(self.model)
        return float(ops.convert_to_numpy(self._strength.value))

    @property
    def groups(self):
        """The prunable unit groups of the current `fit` (empty before)."""
        return [] if self._plan is None else list(self._plan.groups)

    @property
    def unit_coefficients(self):
        """Coefficients `g_u` in effect, one array per prunable group.

        They include adaptive re-ranking and the cost factor; the empty list
        before the first `fit`.
        """
        if self._parts is None:
            return []
        return [np.array(c) for c in self._parts.coefficients.current]

    @property
    def budget_report(self):
        """The budget run of the last `fit` with a budget `target` (start,
        goal, calibrated strength, landing, controller trace); `None`
        before its first epoch or without a budget."""
        budget = self._budget
        return None if budget is None else budget.report

    @property
    def _metrics(self):
        """The `LiveMetrics` of the current `fit` (`None` before)."""
        return None if self._parts is None else self._parts.metrics

    @property
    def _coefficients(self):
        """The `Coefficients` of the current `fit` (`None` before)."""
        return None if self._parts is None else self._parts.coefficients

    @property
    def _budget(self):
        """The `BudgetMode` of the current `fit`, `None` without one."""
        if self._parts is None or self._context.budget is None:
            return None
        return self._parts.mode

    def set_model(self, model):
        super().set_model(model)
        # Before any on_train_begin, so that BackupAndRestore's restore
        # finds where to put the state, whatever the callback order.
        adapter.attach_saved_state(
            model, _resume.ATTRIBUTE, self._export_state, self._import_state
        )

    # ------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        model = self.model
        # The units pruned are the network's: a distiller's student.
        network = trained_network(model)
        options = _options.Options(
            **{
                field.name: getattr(self, field.name)
                for field in dataclasses.fields(_options.Options)
            }
        )
        key = _setup.cache_key(model)
        # A previous fit that raised before on_train_end left its step
        # hook and penalty on: take them off so they do not act twice.
        self.on_train_end()
        if self._plan is None or key != self._cache_key:
            # New model (or new weights): read the groups and compile the
            # step again. Same model: reuse both (no retracing per fit).
            scores = getattr(options.guidance, "scores", None)
            self._plan = _setup.group_plan(
                network,
                options.on_unsupported,
                protected=options.protected,
                uniform_blocks=options.uniform_blocks,
                scores=scores if isinstance(scores, list) else None,
            )
            self._cache_key = key
            self._runner = _setup.step_runner(
                model, self._plan, self._strength, options
            )
        context = _context.FitContext(
            options=options,
            model=model,
            network=network,
            plan=self._plan,
            runner=self._runner,
            params=self.params or {},
        )
        self._strength.assign(0.0)
        self._context, self._parts = context, None
        self._parts = _setup.fit_parts(context)
        context.runner.start(in_step=_setup.runs_in_step(context))

    def on_train_end(self, logs=None):
        if self._runner is not None and self._runner.hooked:
            self._runner.remove_hook()
        if self._parts is not None and self._parts.penalty is not None:
            self._parts.penalty.detach()

    def on_epoch_begin(self, epoch, logs=None):
        context, parts = self._context, self._parts
        if parts is None:
            return
        progress = context.progress
        progress.epochs_done = epoch
        # A resumed run goes on with the state saved with the weights.
        first = progress.first_epoch and not self._resume(epoch)
        progress.first_epoch = False
        progress.in_epoch = True
        context.runner.begin_epoch(first, context.values)
        adapted = parts.coefficients.begin_epoch(epoch, first)
        value = parts.mode.begin_epoch(epoch, first)
        changed = np.float32(value) != np.float32(self.strength)
        self._strength.assign(value)
        if (changed or adapted) and parts.penalty is not None:
            parts.penalty.refresh()

    def on_train_batch_end(self, batch, logs=None):
        context, parts = self._context, self._parts
        if parts is None or not context.plan.variables:
            return
        epoch_steps = (self.params or {}).get("steps")
        context.runner.batch_end(int(batch), epoch_steps)
        parts.mode.batch_end(int(batch), epoch_steps)

    def on_epoch_end(self, epoch, logs=None):
        context, parts = self._context, self._parts
        if parts is None or logs is None:
            return
        context.progress.in_epoch = False
        context.progress.epochs_done = epoch + 1
        context.runner.end_epoch()
        if parts.mode.end_epoch(epoch, logs):
            self.model.stop_training = True
        parts.metrics.log(logs, context.values())
        logs["guided_strength"] = self.strength
        logs["guided_penalty"] = self.penalty()

    # ---------------------------------------------------------- resume

    def _export_state(self):
        """The state a resumed `fit` needs, for the weights file."""
        if self._parts is None:
            return {}
        return _resume.export_state(self._context, self._parts)

    def _import_state(self, stored):
        self._restored = _resume.unpack(stored)

    def _resume(self, epoch):
        """Restores the state read with the weights when this `fit` resumes
        the run that saved it (it starts at the epoch the state was saved
        after, on the same prunable groups); returns whether it did. A
        state saved before this callback's end of the last epoch (another
        callback saved first) has that end run now."""
        restored, self._restored = self._restored, None
        resumed = (
            restored is not None
            and epoch != 0
            and _resume.restore(
                restored, self._context, self._parts, epoch=epoch
            )
        )
        if resumed and _resume.pending_end(restored):
            self.on_epoch_end(epoch - 1, logs={})  # its logs were written
            self._context.progress.epochs_done = epoch
        return resumed

    # -------------------------------------------------------- proximal

    def penalty(self):
        """The current group penalty `strength * sum_u g_u sqrt(p_u) ||W_u||`.

        Returns:
            A Python float (0.0 before the first `fit`).
        """
        if self._context is None:
            return 0.0
        return _penalty_mode.penalty_value(self._context)

    def _values(self):
        """The plan variables of the current `fit` as NumPy arrays."""
        return self._context.values()
