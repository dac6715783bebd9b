"""prune_model: rebuild a model without its pruned unit groups.

A pipeline of steps, each taking values and returning values, each in a
private module of this package (the spine is `_prune`):

1. `graph.analyze` finds the unit groups; protected layers are marked
   (`scoring.protect`), and with `uniform_blocks` the repeated blocks
   found (`scoring.find_families`);
2. a *plan* (kept units per group) comes from the dead units (default), a
   threshold, a target, or the user (`_planning`, over
   `keras_guided.scoring` and, with `measure`, the closed latency loop;
   a user's plan checked in `_plan_checks`);
3. constants: a removed unit whose incoming weights are zero (or masked to
   zero) still emits a constant (its bias through the activation, BN's
   shift, ...). The plan's `Removal` (`_removal`) says which channels go;
   `propagate_constants` finds their constants by calling each layer on
   constant-filled probes (`_constants`), and `fold_constants` turns them
   into bias deltas of the consumers (Dense: `bias += const @
   removed_rows`; Conv: the same, summed over the kernel window;
   `_folding`);
4. `rebuild(removal, weights)` rebuilds the graph layer by layer, through
   `keras.models.clone_model` (its graph walk, with a `call_function`
   that makes each call; `_keras_adapter.replay`): a layer with removed
   units is re-created from its sliced config and weights by its rule
   (`keras_guided.rules`); a layer no removed unit passes through is
   copied with all its state (adapted statistics, vocabularies;
   `_copies.py`); shared layers stay shared, nested models are rebuilt as
   nested models, and no new layer shares a variable with the original
   (`_rebuild`). Steps 3 and 4 are `apply_plan` (`_apply`). A nested
   model sharing a layer with the graph around it is then inlined
   (`_inline`);
5. verification: the pruned model against the original with the removed
   units masked (their incoming weights set to zero), the original's
   graph run with one masked layer made at a time, never a second copy of
   the model (`_masked.masked_reference`), on sample inputs
   (`_verification`), and the `PruneReport` (`_report`); a keras-hub
   model is rebuilt as its own class where its config can say the widths
   (`_hub_rebuild`), any other result checked to load back (`_loadable`);
6. the compile state: a compiled model's pruned model is compiled with
   the same loss and metric objects and a new optimizer of the same
   config, or returned uncompiled with a warning (`_compile`).
"""

from keras_guided.surgery._prune import prune_model
from keras_guided.surgery._report import PruneReport

__all__ = ["PruneReport", "prune_model"]
