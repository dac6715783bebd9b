"""The `keras-guided demo`: train to be cut, cut, fine-tune, export.

On scikit-learn's bundled digits (1,797 8x8 images, no download):

1. train a small CNN with BatchNormalization the plain way: this is
   "before", the model a user has;
2. train it on with the budget recipe,
   `keras_guided.GuidedPruning(target={"flops": 0.1})`: the callback steers
   the guided group penalty so the live network reaches 10 % of the FLOPs
   on schedule (whole units reach exact zero), then releases it and lets
   the rest recover;
3. remove the dead units with `keras_guided.prune_model` (exact: the pruned
   model computes what the trained one computes);
4. fine-tune the smaller model by distillation from "before"
   (`keras_guided.Distiller`), keeping the epoch with the best accuracy on
   a validation split held out of training (the model right after removal
   is a candidate too, so the fine-tune never ends below it there);
5. export both models to `.tflite` (float32 and int8) with
   `keras_guided.export_tflite`, verified against Keras;
6. print a before/after table: units, params, FLOPs, accuracy, `.tflite`
   bytes and latency.

A seed gives the same numbers on one machine: `keras.utils.set_random_seed`
seeds Python, NumPy and the backend, the data split and `fit`'s shuffles
follow from it, and on the TensorFlow backend
`tf.config.experimental.enable_op_determinism()` makes the kernels
deterministic (for the rest of the process). Other machines (CPU, thread
count, library versions) may give other numbers.

Artifacts go to `out_dir`: `before.keras`, `pruned.keras`, the `.tflite`
files, `results.md` (the table) and `results.json` (the numbers); the
table, the paragraph under it and those two files come from `_report`.
The steps are `_run`'s (`run_demo`), the data and the network `_data`'s,
what is measured on a model `_measures`', the progress lines and the
fit callbacks `_callbacks`'.
"""

from keras_guided.demo._data import build_model
from keras_guided.demo._data import load_data
from keras_guided.demo._data import make_deterministic
from keras_guided.demo._data import split_validation
from keras_guided.demo._run import report_summary
from keras_guided.demo._run import run_demo

__all__ = [
    "build_model",
    "load_data",
    "make_deterministic",
    "report_summary",
    "run_demo",
    "split_validation",
]
