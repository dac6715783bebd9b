"""`keras_guided.callbacks`: the `GuidedPruning` callback and its parts.

`GuidedPruning`, `trained_network` and the option constants (`MODES`,
`SCHEDULES`, `ON_TARGET`, ...) are public on this face; the parts are
private to this package: `_guided_pruning` (the `GuidedPruning` class:
its hooks), `_trained_network`, `_options`, `_context`, `_setup`,
`_group_plan`,
`_step_runner`, `_budget_mode` (with `_importance`, `_landing` and
`_allocation`), `_schedule_mode`, `_coefficients`, `_penalty_mode`,
`_live_metrics`, `_resume`.

`GuidedPruning`: guided group penalties on whole unit groups during `fit`.

A `GuidedRegularizer` sees one kernel. This callback sees the model: it
reads the unit groups of `keras_guided.graph.find_unit_groups` (a unit's
kernel slice, bias, BatchNormalization gamma/beta and the consumers' input
slices) and penalizes each group as one, with one guidance coefficient per
group unit.

The callback is a thin layer of hooks (`on_train_begin`, `on_epoch_begin`,
`on_train_batch_end`, `on_epoch_end`, `on_train_end`) that delegate to
small objects, each owning its own state; each job lives in its own
module. `on_train_begin` builds one `FitContext` per `fit` (`_context`):
the validated options, the model and the network pruned, the plan of
its prunable groups, the step runner (with the strength and unit-weight
variables, the dead mask and the death guard), the `fit`'s `params` and
its progress. Every part is built from that context and reads it (and
the parts it builds on, passed as arguments), never the callback; the
parts of a `fit` are kept together in one `FitParts`:

* `_options`: argument validation, once in `__init__`: a frozen
  `Options` whose fields the callback keeps as its attributes (read into
  the context at the start of each `fit`), and the option constants.
* `_context`: `FitContext` (what the parts read for one `fit`),
  `FitProgress` (the epochs the hooks have run, for resuming) and
  `FitParts` (the parts built from a context).
* `_setup`: what `on_train_begin` builds (the plan and step runner, once
  per model; from the context, the `FitParts` of a `fit`: live metrics,
  coefficients, epoch mode and penalty).
* `keras_guided.proximal`: the pure proximal core,
  `shrink(values, state, ...) -> (values, state)` in `keras.ops`, with the
  budget's death guard; no Python loop over units.
* `_group_plan`: where each unit group's weights are, as int
  index arrays built once per model (one `segment_sum` and one gather per
  weight slice).
* `_step_runner`: `StepRunner` (one per plan and model, with
  the step's state: dead mask and death guard) runs the step inside the
  compiled train step, right after the optimizer's update, for the
  duration of `fit` (TensorFlow and JAX, through the optimizer hook of
  `keras_guided._keras_adapter`, the one module that touches Keras
  internals), else from Python after each batch, counting the optimizer
  steps of the epoch; it marks dead units at epoch starts.
* `keras_guided.schedules`: strength schedules as small callables.
* `_budget_mode`: `BudgetMode` (one per `fit` with a budget
  target), the budget recipe: the controller check points, composing
  `_importance` (importance guidance), `_landing` (the landing) and
  `_allocation` (per-layer floors, reachability).
* `_schedule_mode`: `ScheduleMode` (one per `fit` without a budget), the
  strength per epoch and a threshold target. Both modes have one epoch
  interface (`begin_epoch` gives the strength, `batch_end`, `end_epoch`
  says whether to stop, `state`/`restore` for resuming), so the hooks do
  not branch on the mode.
* `_coefficients`: `Coefficients` (one per `fit`), guidance
  coefficients, cost factors, adaptive ranking.
* `_penalty_mode`: `mode="penalty"`, a `PenaltyMode` that
  borrows one variable's `regularizer` for the group penalty during
  `fit`.
* `_live_metrics`: live units and the live network's cost, and the
  `live_*` entries of the epoch-end logs.
* `_resume`: the state a resumed `fit` restores, in the weights file.

No Python runs per batch in the proximal mode on TensorFlow and JAX; the
budget controller reads the small state vectors (dead mask, held units) at
its check points, about ten times per epoch and at least 40 times along
the path.
"""

from keras_guided.callbacks._guided_pruning import GuidedPruning
from keras_guided.callbacks._options import COSTS  # noqa: F401 (public)
from keras_guided.callbacks._options import MODES  # noqa: F401 (public)
from keras_guided.callbacks._options import ON_TARGET  # noqa: F401 (public)
from keras_guided.callbacks._options import ON_UNREACHABLE  # noqa: F401 (public)
from keras_guided.callbacks._options import SCHEDULES  # noqa: F401 (public)
from keras_guided.callbacks._options import TARGET_METRICS  # noqa: F401 (public)
from keras_guided.callbacks._trained_network import trained_network  # noqa: F401 (public)

__all__ = ["GuidedPruning"]
