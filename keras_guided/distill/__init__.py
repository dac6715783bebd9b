"""`keras_guided.distill`: fine-tuning by knowledge distillation, the pruned
model learning from the trained (unpruned) one.

Where each part lives (every module private to this package; the names
below are its face):

* `_distiller`: `Distiller`, a `keras.Model` whose `call` is the student's
  and whose `compute_loss` adds the soft-target term from a frozen copy of
  the teacher, for any model `fit` can train (classifiers, and causal LMs
  with `(batch, sequence, vocabulary)` logits and padding-mask sample
  weights);
* `_causal_lm`: `distill_causal_lm`, the loop that recovers a pruned
  keras-hub causal LM for a budget of tokens (`DistillReport`).
"""

from keras_guided.distill._causal_lm import DistillReport
from keras_guided.distill._causal_lm import distill_causal_lm
from keras_guided.distill._distiller import Distiller

__all__ = ["Distiller", "DistillReport", "distill_causal_lm"]
