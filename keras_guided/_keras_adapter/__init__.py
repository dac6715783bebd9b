"""Every use of Keras internals by keras_guided, in one place.

`GuidedPruning` runs its proximal step inside the compiled train step. Keras
has no public hook for "after the optimizer step, inside the step", so this
module provides one, built on two public entry points of every Keras 3
optimizer:

* `optimizer.apply(grads, trainable_variables)` is what the TensorFlow and
  torch train steps call (through `apply_gradients`) and what JAX's
  `stateless_apply` calls inside a `StatelessScope`. Wrapping it on the
  optimizer *instance* (never the class) adds our step after the update, in
  the same compiled function, for the duration of one `fit`.
* On JAX the compiled step is a pure function of the training state
  (trainable, non-trainable, optimizer and metrics variables); a variable
  outside that state is frozen into the trace and cannot be written. The
  callback's few state variables (dead mask, strength, coefficients, the
  budget guard) therefore ride along as extra optimizer variables during
  `fit` (`carry_state`). They are kept out of what the optimizer saves and
  loads, so the optimizer's checkpoint entries are the same with and
  without the callback.
* A weights file (`model.save_weights`, which `BackupAndRestore` and
  `ModelCheckpoint(save_weights_only=True)` call, and `model.save`) holds
  every Keras saveable reachable from the model's attributes. The
  callback's resume state rides in one such object
  (`attach_saved_state`), set on the model as a plain attribute, so it
  joins neither `model.layers` nor `model.weights`; a file without it
  loads as before, and a model without it ignores it.

The graph analysis (`graph/`), the rewrite (`surgery/`) and the cost
model (`stats`) read a model's graph. Keras has public `model.inputs`,
`model.outputs`, `model.layers` and `Layer.compute_output_spec`, but no
public way to walk the nodes of a Functional graph, to find the layer that
produced a symbolic tensor, or to re-call a node on new tensors; the small
functions of `_graphs` do that (`graph_nodes`, `producer`,
`call_arguments`, ...).

Private Keras API used here, and nowhere else in the package:
`optimizer._variables` (the list behind `optimizer.variables`),
`optimizer._learning_rate` (a `LearningRateSchedule`, read to evaluate the
rate of the step that just ran), `Layer._flatten_layers` (to find the
sublayers of a composite layer, `direct_sublayers`),
`Sequential._functional`, `Functional._nodes_by_depth`,
`Functional._operations`, `Functional._inputs_struct` /
`_outputs_struct`, `Functional._run_through_graph` (the walk
`clone_model` runs, `replay`), `Trainer._compile_config` (the arguments
`compile` was called with, `compile_arguments`), a layer's `__dict__`
(a shallow view whose `get_config` sees other values, `config_with`),
`KerasTensor._keras_history`, `Operation._inbound_nodes`,
`Node.arguments` (`.fill_in`, `.args`, `.kwargs`),
`MultiHeadAttention._use_gate`, and (to copy a layer with all its state,
`layer_tree` / `replay_constructor`) `Layer._flatten_layers`,
`Operation._auto_config` and `Layer._path`, and
`keras.src.saving.keras_saveable.KerasSaveable` (the base class that the
weights files walk). While a composite layer is traced (`trace_scope`):
keras-hub's `keras_hub.src.layers.modeling.transformer_layer_utils.
compute_causal_mask` (replaced, then restored, in the modules that
imported it) and the classes' `__call__` of sublayers whose
`compute_output_spec` does not take all of their `call`'s arguments.
While calibration statistics are read (`recording_calls`): a layer
instance's `call` attribute (Keras' `Operation.__call__` looks up
`self.call` at each eager call), shadowed on the instance and removed
again. While a pruned keras-hub model is built again as its class
(`deferred_variables`, `adopt_storage`): `StatelessScope(
initialize_variables=False)`, Keras' list of variables waiting for values
(`global_state`'s `uninitialized_variables`), `Variable._value`,
`Variable._initializer`, `Variable._initialize` and
`Variable._deferred_initialize`. Checked on the Keras versions in
`CHECKED_KERAS_VERSIONS`; `tests/test_keras_adapter.py` pins them.

Where each part lives: `_optimizer` (the step hook, `carry_state`, the
step's learning rate), `_graphs` (walking and replaying a Functional
graph), `_layer_state` (copying a layer with its state, compile
arguments, configs, the saved state on a model), `_tracing`
(`trace_scope`), `_variables` (variables made without values and given
another's storage), `_versions` (`CHECKED_KERAS_VERSIONS`).
"""

from keras_guided._keras_adapter._graphs import attention_uses_gate
from keras_guided._keras_adapter._graphs import call_arguments
from keras_guided._keras_adapter._graphs import direct_sublayers
from keras_guided._keras_adapter._graphs import first_input
from keras_guided._keras_adapter._graphs import graph_nodes
from keras_guided._keras_adapter._graphs import has_graph
from keras_guided._keras_adapter._graphs import layer_calls
from keras_guided._keras_adapter._graphs import node_arguments
from keras_guided._keras_adapter._graphs import pack_inputs
from keras_guided._keras_adapter._graphs import pack_outputs
from keras_guided._keras_adapter._graphs import producer
from keras_guided._keras_adapter._graphs import replay
from keras_guided._keras_adapter._graphs import sequential_graph
from keras_guided._keras_adapter._graphs import standardize_inputs
from keras_guided._keras_adapter._graphs import with_context_arguments
from keras_guided._keras_adapter._layer_state import attach_saved_state
from keras_guided._keras_adapter._layer_state import compile_arguments
from keras_guided._keras_adapter._layer_state import config_with
from keras_guided._keras_adapter._layer_state import layer_tree
from keras_guided._keras_adapter._layer_state import layer_view
from keras_guided._keras_adapter._layer_state import recording_calls
from keras_guided._keras_adapter._layer_state import replay_constructor
from keras_guided._keras_adapter._optimizer import after_optimizer_step
from keras_guided._keras_adapter._optimizer import carry_state
from keras_guided._keras_adapter._optimizer import step_learning_rate
from keras_guided._keras_adapter._optimizer import supports_step_hook
from keras_guided._keras_adapter._tracing import TraceScope
from keras_guided._keras_adapter._tracing import trace_scope
from keras_guided._keras_adapter._variables import adopt_storage
from keras_guided._keras_adapter._variables import deferred_variables
from keras_guided._keras_adapter._variables import has_values
from keras_guided._keras_adapter._variables import initialize
from keras_guided._keras_adapter._versions import CHECKED_KERAS_VERSIONS
from keras_guided._keras_adapter._versions import checked

__all__ = [
    "CHECKED_KERAS_VERSIONS",
    "TraceScope",
    "adopt_storage",
    "after_optimizer_step",
    "attach_saved_state",
    "attention_uses_gate",
    "call_arguments",
    "carry_state",
    "checked",
    "compile_arguments",
    "config_with",
    "deferred_variables",
    "direct_sublayers",
    "first_input",
    "graph_nodes",
    "has_graph",
    "has_values",
    "initialize",
    "layer_calls",
    "layer_tree",
    "layer_view",
    "node_arguments",
    "pack_inputs",
    "pack_outputs",
    "producer",
    "recording_calls",
    "replay",
    "standardize_inputs",
    "with_context_arguments",
    "replay_constructor",
    "sequential_graph",
    "step_learning_rate",
    "supports_step_hook",
    "trace_scope",
]
