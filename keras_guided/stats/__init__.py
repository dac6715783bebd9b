"""The one cost model: parameters and FLOPs per weight, per layer, per model.

FLOPs are counted as 2 x multiply-accumulates for one example (batch size
1), the convention of most model-zoo tables. Each layer's rule in
`keras_guided.rules` says what every element of each of its weights costs
per call (a Dense kernel element: one multiply-accumulate per input
position); a layer's FLOPs are that cost times the weight sizes. Pruning
targets (`scoring.plan_from_target`), cost-aware guidance and the tables
here all use these numbers, so "keep 25 % of the FLOPs" means the same
everywhere. Element-wise layers (activations, BatchNormalization, pooling,
Add) cost little and fold away on device, so they are not counted. Costs
are priced per call: a layer used several times (a shared layer) counts
once per call, and so does every layer of a nested model called several
times (a shared tower), each call at its own shapes. Recurrent
layers cost one multiply-accumulate per kernel and recurrent-kernel element
per time step (biases and gate activations are not counted), and their
wrappers are priced through what they wrap: `Bidirectional` is both
directions, `TimeDistributed` its inner layer once per time step.

A layer whose FLOPs cannot be known (no rule prices it: an unknown or
composite layer, attention without a FLOPs rule, a layer of a subclassed
model, whose calls Keras does not record) is *unpriced*: it counts 0, and
`count_flops` says so (a warning, or an error with `strict=True`), with
the share of the model's parameters those layers hold; `unpriced` returns
the same figures for reports, and a FLOPs budget (`prune_model(target=
{"flops": ...})`, `GuidedPruning`) warns when more than
`UNPRICED_BUDGET_SHARE` of the parameters sit in unpriced layers.

`model_costs` is the model as one `LayerCost` per leaf layer (keyed by the
layer object and its variables); `price(layer_cost, metric, kept)` prices
one layer with its weights cut to kept shapes, and `total` a model. The
tables here, the callback's live costs (`live_params`, `live_flops`) and
marginal costs, and the budget controller all go through `price`, so a
non-linear cost (a latency table over kept channel counts) is one more
entry in `PRICES`.

Where each part lives: `_layers` (the leaf layers of a model and their
calls in its graph), `_model` (`LayerCost`, `WeightCost`, `model_costs`,
`price`, `total`, `PRICES`: the cost model itself), `_counts` (whole-model
counts: `count_params`, `count_flops`, `layer_costs`), `_tables`
(`compare`, `format_table`), `_unpriced` (`Unpriced`, `unpriced`,
`warn_unpriced_budget`).
"""

from keras_guided.stats._counts import count_flops
from keras_guided.stats._counts import count_params
from keras_guided.stats._counts import layer_costs
from keras_guided.stats._counts import weight_costs
from keras_guided.stats._layers import iter_layers
from keras_guided.stats._model import COUNTS
from keras_guided.stats._model import PRICES
from keras_guided.stats._model import LayerCost
from keras_guided.stats._model import WeightCost
from keras_guided.stats._model import model_costs
from keras_guided.stats._model import price
from keras_guided.stats._model import total
from keras_guided.stats._tables import compare
from keras_guided.stats._tables import format_table
from keras_guided.stats._unpriced import UNPRICED_BUDGET_SHARE
from keras_guided.stats._unpriced import Unpriced
from keras_guided.stats._unpriced import unpriced
from keras_guided.stats._unpriced import warn_unpriced_budget

__all__ = [
    "COUNTS",
    "PRICES",
    "UNPRICED_BUDGET_SHARE",
    "LayerCost",
    "Unpriced",
    "WeightCost",
    "compare",
    "count_flops",
    "count_params",
    "format_table",
    "iter_layers",
    "layer_costs",
    "model_costs",
    "price",
    "total",
    "unpriced",
    "warn_unpriced_budget",
    "weight_costs",
]
