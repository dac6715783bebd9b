"""The one registry of layer knowledge: what each layer class means for pruning.

Every layer class `keras_guided` understands is described here once, as a
`LayerRule`, and the rest of the package dispatches through `rule_for`.
Built-in rules and users' rules (`register_rule`) speak one dialect: the
same fields, read by the same code.

* `kind`: how the graph sees the layer: it creates units (`"producer"`:
  Dense, Conv, Embedding, ...), passes channel `c` to channel `c`
  (`"elementwise"`, `"normalization"`, `"depthwise"`), moves channels
  (`"reshape"`, `"permute"`, `"concatenate"`), ties the channels of its
  inputs (`"merge"`), mixes them (`"mixing"`), or is copied unchanged with
  the channels around it kept (`"keep"`); users' rules take the first two;
* `output_weights`: `(weight name, axis)` pairs, the slices each output
  unit owns (for a layer of `UNIT_KINDS`: what `output_slices` and
  `keras_guided.units.output_slices` return) or that follow the units of
  its input (an elementwise layer); `input_weights`: `(weight name, axis,
  block)` triples, the slices each input channel of a producer owns
  (`input_slices`). Either may be a function of the layer, for axes that
  depend on its config (a bias, LoRA's factors, an EinsumDense equation).
  A built-in entry takes them from a constructor shared by the layers
  that cut their units alike (`_units.unit_axes("conv")`), so the rule
  object carries its axes as a user's does;
* `family`: a descriptive label only (`"dense"`, `"conv"`, ...; `None` for
  users' rules), what `unit_family` and `keras_guided.units.layer_family`
  report; nothing reads it to find axes;
* `flops(layer, input_shape, output_shape)`: `{weight name: FLOPs per
  element of that weight}` for one call on one example; `stats` (the
  cost model) multiplies by the kept size of each weight, so the same
  numbers serve cost tables, cost-aware guidance and pruning targets;
* `check(layer, input_shape, output_shape)`: why a configuration cannot be
  pruned through (`"groups=4 with 3 input channels per group"`), or `None`;
* `rewrite(layer, weights, kept_inputs, kept_outputs) -> (config,
  new_weights)`: how the layer is rebuilt for kept channels:

  - `layer`: the original (built) layer, never modified;
  - `weights`: `{weight name: numpy array}` of the layer (names as in
    `units.weight_key`), with the folded constants of removed input
    channels already added to its bias (a `"bias"` entry may be present for
    a layer built with `use_bias=False`, the rule must then switch
    `use_bias` on);
  - `kept_inputs`: for each input tensor, the sorted int array of kept
    channels (last axis; all of them when nothing is removed there), or
    `None` for a tensor without a known last axis;
  - `kept_outputs`: the same for the (first) output tensor;
  - returns the config of the new layer (`type(layer).from_config(config)`)
    and its weights, in the order of `layer.weights`.

The other fields of a rule carry what the rest of the package needs to
know about a layer, so nothing outside `rules/` branches on a layer class
or a family: `linear_response` (how constants of removed inputs fold into
its bias), `bias_at_zero` and `zero_when_masked` (its output when its units
are zero), `grouped` (its `groups` may make it pass channels through),
`latency` (how a latency table times it), `mixes_channels` and `note`.
Built-in rules fill more of them than `register_rule` takes (a user's
rule folds through `call_difference`). A new built-in layer class is one
entry in `_builtin`.

Two pieces of layer knowledge are functions rather than fields:
`grouped_attention_layout` (which sublayers of a traced keras-hub
attention layer are its grouped-query heads: a `GroupedAttention`) and
`output_spec` (a call's output spec at concrete input shapes).

A layer through which no removed channel passes is copied unchanged,
weights included, whatever its kind. Users add rules for their own layers
with `register_rule`; a user rule wins over a built-in one.

Where each part lives: `_registry` (`register_rule`, `rule_for` and the
look-ups through them), `_rule` (`LayerRule`), `_builtin` (the table of
built-in rules, the one place a built-in layer class is added), `_units`
(the unit-axis functions the built-in entries carry), `_grouped_attention`,
`_specs`, `_ops` (what each plain `keras.ops` operation does to channels),
`_rewrites`, `_flops`, `_responses` and `_checks` (the functions those rules
name).
"""

from keras_guided.rules._flops import UnknownSizeError
from keras_guided.rules._flops import is_reverse_embedding_call
from keras_guided.rules._grouped_attention import GroupedAttention
from keras_guided.rules._grouped_attention import grouped_attention_layout
from keras_guided.rules._ops import MIXING_ACTIVATIONS
from keras_guided.rules._ops import op_kind
from keras_guided.rules._registry import get_rule
from keras_guided.rules._registry import input_slices
from keras_guided.rules._registry import output_slices
from keras_guided.rules._registry import register_rule
from keras_guided.rules._registry import rule_for
from keras_guided.rules._registry import ruled_class
from keras_guided.rules._registry import timed_class
from keras_guided.rules._registry import unit_family
from keras_guided.rules._registry import unregister_rule
from keras_guided.rules._registry import user_rule
from keras_guided.rules._responses import call_difference
from keras_guided.rules._rewrites import ATTENTION_HEAD_WEIGHTS
from keras_guided.rules._rewrites import ATTENTION_OUTPUT_WEIGHT
from keras_guided.rules._rewrites import grouped_conv_rule
from keras_guided.rules._rewrites import take
from keras_guided.rules._rewrites import unchanged_rule
from keras_guided.rules._rule import FREE_KINDS
from keras_guided.rules._rule import GRAPH_KINDS
from keras_guided.rules._rule import KINDS
from keras_guided.rules._rule import LATENCY_KINDS
from keras_guided.rules._rule import UNIT_KINDS
from keras_guided.rules._rule import LayerRule
from keras_guided.rules._specs import output_spec
from keras_guided.rules._units import FAMILIES
from keras_guided.rules._units import KERNEL_FAMILIES
from keras_guided.rules._units import dense_like_einsum
from keras_guided.rules._units import normalization_axis
from keras_guided.rules._units import without_bias

# Several names a line keep this face short (it only re-exports).
# fmt: off
__all__ = [
    "ATTENTION_HEAD_WEIGHTS", "ATTENTION_OUTPUT_WEIGHT", "FAMILIES",
    "FREE_KINDS", "GRAPH_KINDS", "GroupedAttention", "KERNEL_FAMILIES",
    "KINDS", "LATENCY_KINDS", "LayerRule", "MIXING_ACTIVATIONS", "UNIT_KINDS",
    "UnknownSizeError", "call_difference", "dense_like_einsum", "get_rule",
    "grouped_attention_layout", "grouped_conv_rule", "input_slices",
    "is_reverse_embedding_call", "normalization_axis", "op_kind",
    "output_slices", "output_spec", "register_rule", "rule_for", "ruled_class",
    "take", "timed_class", "unchanged_rule", "unit_family", "unregister_rule",
    "user_rule", "without_bias",
]
# fmt: on
