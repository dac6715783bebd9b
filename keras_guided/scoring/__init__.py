"""`keras_guided.scoring`: importance and plans of kept units, in one home.

A *plan* is a dict `{group index: sorted int array of kept unit indices}`;
groups missing from it keep all their units. `prune_model` and
`GuidedPruning` turn a threshold, a target or nothing (dead units only)
into a plan here, and nowhere else.

Where each part lives (every module private to this package; the names
below are its face):

* `_importance`: the score of every unit from its weights (`unit_scores`,
  `dead_units`, `default_scores`), and scores checked against the groups
  (`check_scores`);
* `_calibration`: the score of every unit from forward passes over
  calibration data (`calibration_scores`: activation magnitude, Wanda-sp);
* `_limits`: what every plan obeys (`protect`, `check_limits`,
  `floor_units`), plans from masks and thresholds, and the one message of
  a target out of reach (`unreachable_message`);
* `_cost`: the exact kept params, FLOPs or latency (`KeptCost`,
  `plan_cost`, `unit_costs`);
* `_targets`: a target read once (`Target`, the grammar of
  `keras_guided.budget.parse_budget`) with the planning inputs in one
  value (`PlanInputs`), handed to one greedy (`plan_from_target`);
* `_greedy`: the count greedy (units, params, FLOPs);
* `_latency_greedy`: the latency greedy (importance per millisecond);
* `_loop`: a latency target held as measured, with the candidate's
  `build` and the `measure` injected (`plan_measured`, `LatencyLoop`);
* `_uniform`: the same widths across repeated blocks (`find_families`,
  `MergedGroups`).

Dependencies run one way: this package uses `keras_guided.latency`'s face
for tables and timing, and `latency` never imports `scoring`.
"""

from keras_guided._axes import gather_units
from keras_guided.scoring._calibration import calibration_scores
from keras_guided.scoring._cost import KeptCost
from keras_guided.scoring._cost import plan_cost
from keras_guided.scoring._cost import unit_costs
from keras_guided.scoring._importance import check_scores
from keras_guided.scoring._importance import dead_units
from keras_guided.scoring._importance import default_scores
from keras_guided.scoring._importance import unit_scores
from keras_guided.scoring._importance import weight_value
from keras_guided.scoring._limits import check_limits
from keras_guided.scoring._limits import check_protected
from keras_guided.scoring._limits import floor_units
from keras_guided.scoring._limits import plan_from_mask
from keras_guided.scoring._limits import plan_from_threshold
from keras_guided.scoring._limits import protect
from keras_guided.scoring._limits import unreachable_message
from keras_guided.scoring._loop import LatencyLoop
from keras_guided.scoring._loop import check_measure
from keras_guided.scoring._loop import plan_measured
from keras_guided.scoring._targets import METRICS
from keras_guided.scoring._targets import PlanInputs
from keras_guided.scoring._targets import Target
from keras_guided.scoring._targets import parse_target
from keras_guided.scoring._targets import plan_from_target
from keras_guided.scoring._uniform import Family
from keras_guided.scoring._uniform import MergedGroups
from keras_guided.scoring._uniform import describe_families
from keras_guided.scoring._uniform import find_families
from keras_guided.scoring._uniform import widen_families

__all__ = [
    "METRICS",
    "Family",
    "KeptCost",
    "LatencyLoop",
    "MergedGroups",
    "PlanInputs",
    "Target",
    "calibration_scores",
    "check_limits",
    "check_measure",
    "check_protected",
    "check_scores",
    "dead_units",
    "default_scores",
    "describe_families",
    "find_families",
    "floor_units",
    "gather_units",
    "plan_cost",
    "plan_from_mask",
    "plan_from_target",
    "plan_from_threshold",
    "plan_measured",
    "parse_target",
    "protect",
    "unit_costs",
    "unit_scores",
    "unreachable_message",
    "weight_value",
    "widen_families",
]
