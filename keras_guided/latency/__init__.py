"""`keras_guided.latency`: LiteRT latency tables and timing.

`LatencyTable`, `LayerLatency`, `build_latency_table`, `measure_latency`,
`InterleavedTimer` and the other public names are re-exported here; the
parts are private to this package: `_table` (`LatencyTable`),
`_layer_latency` (`LayerLatency`), `_build` (`build_latency_table`,
`measure_latency`), `_pricing` (a model's layers priced for a table),
`_settings` (the measurement settings and the runtime, checked),
`_signatures` (what a layer's timing depends on), `_sampling` (the
sampled channel counts, timed into the cache), `_measure` (timing in
LiteRT), `_cache` (the on-disk cache), `_calibration` (ms per FLOP and the
whole-model calibration), `_interpolation` (a sampled grid made monotone
and interpolated), `_timing` (interleaved timers) and `_check`
(`LatencyTry`, `LatencyCheck`). Planning for a latency target (the
greedy, the measured loop) is `keras_guided.scoring`'s, over this face;
this package never imports `scoring`.

Latency tables: what each layer costs in LiteRT on this machine.

FLOPs are a stand-in for speed: on a phone CPU a depthwise convolution
costs far more per FLOP than a pointwise one, and a kernel runs faster at
channel counts its SIMD tiles like. A `LatencyTable` measures instead:

* every layer whose rule (`keras_guided.rules`) has a `latency` kind
  (`Conv1D`, `Conv2D`, `DepthwiseConv2D`, `Dense` and their subclasses,
  channels-last, `groups=1`) is converted alone, at its input shape,
  with the converter settings of `export_tflite`, and timed in the
  LiteRT interpreter (`ai_edge_litert`) on a small grid of kept input
  and output channel counts (`num_samples` per dimension: quarters of the
  full width rounded to multiples of 8, and the full width; a depthwise
  layer has one channel dimension);
* the interpreter's fixed cost of one `invoke` (timed once per settings
  on a one-unit Dense layer) is subtracted from every sample, so a layer
  is priced by what its kernel costs and small layers are not inflated by
  an overhead that pruning never removes;
* between samples the latency is interpolated bilinearly (linearly for
  depthwise), below the smallest sample extrapolated along the first
  segment, never below 0; the sampled grid is made non-decreasing in both
  counts first (more channels are never faster; timer noise is);
* any other layer with FLOPs (`SeparableConv2D`, `Conv2DTranspose`, ...)
  is *estimated*: its FLOPs times the measured layers' mean ms per FLOP;
* what the layers alone do not explain (element-wise layers, padding,
  residual adds, moving activations between kernels: about half of
  MobileNetV2's time at 224 x 224) is calibrated once on the whole model
  (`whole_model=True`): the model is converted and timed, and the time the
  priced layers leave unexplained is spread over the measured layers in
  proportion to the activations they write (output positions times output
  channels), a cost per kept output channel. The table's total at full
  width is then the measured latency of the whole model, and a latency
  target means a share of what the device will measure;
* layers with the same signature (class, timing-relevant config, input
  size, channel counts) are measured once, and every measured signature is
  cached on disk (a JSON file per runtime and settings, written
  atomically after each signature, so an interrupted build resumes).

The cache key holds everything that changes a timing: the quantization,
`num_threads`, `num_runs`, the statistic, `num_samples`, the versions of
`ai_edge_litert`, TensorFlow and Keras, and the CPU. A table built with
other settings is never reused.

References:
    Shen et al., "Structural Pruning via Latency-Saliency Knapsack"
    (HALP), NeurIPS 2022: latency lookup tables priced per channel count.
"""

from keras_guided.latency._build import build_latency_table
from keras_guided.latency._build import measure_latency
from keras_guided.latency._check import LatencyCheck
from keras_guided.latency._check import LatencyTry
from keras_guided.latency._layer_latency import LayerLatency
from keras_guided.latency._settings import STATISTICS as STATISTICS
from keras_guided.latency._table import BUILD_HINT as BUILD_HINT
from keras_guided.latency._table import LatencyTable
from keras_guided.latency._table import check_is_table as check_is_table
from keras_guided.latency._timing import InterleavedTimer
from keras_guided.latency._timing import LatencyComparison

__all__ = [
    "InterleavedTimer",
    "LatencyCheck",
    "LatencyComparison",
    "LatencyTable",
    "LatencyTry",
    "LayerLatency",
    "build_latency_table",
    "measure_latency",
]
