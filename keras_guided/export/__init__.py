"""`keras_guided.export`: a verified LiteRT (TFLite) file from a Keras model.

`export_tflite`, `ExportReport` and the option constants (`QUANTIZATIONS`,
`FLOAT32_TOLERANCE`) are public on this face, with `tflite_content` (the
bytes `export_tflite` writes, which the latency tables and the closed
latency loop time), `converter_settings` and `apply_settings` (the
converter settings the per-layer latency tables share), and the helpers
the latency tables and the demo run files with: `check_backend`,
`check_quantization` and `single_input` (the checks `export_tflite`
makes), `import_interpreter`, `make_interpreter` and `median_latency`
(LiteRT in this process), `run_litert` (a file run on an array) and
`keras_outputs` (what Keras gives on the same array). The parts are
private to this package, each job in its own module:

* `_export`: `export_tflite` and `tflite_content`, the one conversion
  written as a verified file or returned as bytes;
* `_report`: `ExportReport`;
* `_job`: the model read and checked, ready to convert, and the
  temporary file the conversion writes;
* `_checks`: the arguments checked before any conversion, and the model's
  input or inputs read;
* `_inputs`: input shapes, sample and calibration data of a model with
  one or several inputs;
* `_converter`: the converter settings of a quantization mode and the
  converter run, also as a child process (int8 calibration);
* `_conversion`: the conversion and its errors (the Flex ops named, a
  crashed int8 calibration), the dynamic-batch retry;
* `_verification`: the file run in LiteRT and compared with Keras;
* `_litert_run`: the LiteRT interpreter run, also as a child process;
* `_interpreter`: the interpreter in this process, and the latency.

`export_tflite`: a verified LiteRT (TFLite) file from a Keras model.

A thin layer over `model.export(format="litert")` (Keras' LiteRT exporter:
ExportArchive -> SavedModel -> `tf.lite.TFLiteConverter`) that adds what a
deployment needs and the plain call does not give:

* built-in TFLite ops only, so the file runs on the stock LiteRT runtime; a
  model that would need the Flex (TensorFlow ops) runtime fails with an error
  naming the op instead of silently growing a Flex dependency;
* quantization modes by name (`"dynamic"`, `"float16"`, `"int8"`), with the
  int8 calibration data checked up front;
* verification: the written file is run in the LiteRT interpreter
  (`ai_edge_litert`) on sample inputs and compared with Keras; a float32
  export that disagrees (a NaN-emitting conversion, say) is refused;
* an atomic write: a temporary file in the target directory, renamed over
  the target only once conversion and verification succeeded;
* an optional latency measurement (median over interpreter runs).

Export needs the TensorFlow backend (the TFLite converter is TensorFlow's).
Under JAX or PyTorch, save the model as `.keras` and export it from a
TensorFlow-backend process, e.g. `KERAS_BACKEND=tensorflow keras-guided
export model.keras -o model.tflite`.
"""

from keras_guided.export._checks import QUANTIZATIONS
from keras_guided.export._checks import check_backend
from keras_guided.export._checks import check_quantization
from keras_guided.export._checks import single_input
from keras_guided.export._converter import apply_settings
from keras_guided.export._converter import converter_settings
from keras_guided.export._export import export_tflite
from keras_guided.export._export import tflite_content
from keras_guided.export._interpreter import import_interpreter
from keras_guided.export._interpreter import make_interpreter
from keras_guided.export._interpreter import median_latency
from keras_guided.export._litert_run import run_litert
from keras_guided.export._report import ExportReport
from keras_guided.export._verification import FLOAT32_TOLERANCE
from keras_guided.export._verification import keras_outputs

__all__ = [
    "FLOAT32_TOLERANCE",
    "QUANTIZATIONS",
    "ExportReport",
    "apply_settings",
    "check_backend",
    "check_quantization",
    "converter_settings",
    "export_tflite",
    "import_interpreter",
    "keras_outputs",
    "make_interpreter",
    "median_latency",
    "run_litert",
    "single_input",
    "tflite_content",
]
