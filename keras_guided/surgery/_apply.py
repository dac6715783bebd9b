"""A plan applied to an analysed model: constants, folding, rebuild.

The middle of `prune_model` (steps 3 and 4, see `keras_guided.surgery`),
one value handed to the next: the plan's `Removal`, the `Constants` of its
removed channels, the `Folding` of those into bias deltas, the pruned
weights, the `Rebuilt` model. The masked reference of the verification
is run, not rebuilt (`_masked`)."""

import dataclasses

from keras_guided.surgery._constants import propagate_constants
from keras_guided.surgery._folding import fold_constants
from keras_guided.surgery._rebuild import rebuild
from keras_guided.surgery._removal import Removal
from keras_guided.surgery._removal import pruned_weights


@dataclasses.dataclass
class Applied:
    """The pruned model of a plan.

    Attributes:
        model: the pruned `keras.Model`.
        notes: where constants could not be probed or folded exactly, and
            config entries the rebuild dropped, in that order.
        shared: `Rebuilt.shared` of the rebuild.
        folding_notes: the notes on constants probed or folded
            approximately (or not at all), what an inexact verification
            quotes.
    """

    model: object
    notes: list
    shared: dict
    folding_notes: list = dataclasses.field(default_factory=list)


def apply_plan(analysis, plan, shapes, noise):
    """The pruned model of `plan` (`{group index: kept unit indices}`).

    Args:
        analysis: the `GraphAnalysis` of the model.
        plan: the kept units of each pruned group.
        shapes: `{tensor id: concrete shape}` where lengths are unknown.
        noise: the `ProbeNoise` of this prune.

    Returns:
        An `Applied`.
    """
    removal = Removal.of(analysis, plan)
    constants = propagate_constants(removal, shapes, noise)
    folding = fold_constants(removal, constants)
    rebuilt = rebuild(removal, pruned_weights(folding.deltas))
    return Applied(
        model=rebuilt.model,
        notes=constants.notes + folding.notes + rebuilt.notes,
        shared=rebuilt.shared,
        folding_notes=constants.notes + folding.notes,
    )
