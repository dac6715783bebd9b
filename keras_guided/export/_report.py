"""`ExportReport`: what `export_tflite` wrote and how well it matches
Keras."""

import dataclasses


@dataclasses.dataclass
class ExportReport:
    """What `keras_guided.export_tflite` wrote and how well it matches Keras.

    Attributes:
        path: absolute path of the written `.tflite` file.
        bytes: its size in bytes.
        quantization: `None`, `"dynamic"`, `"float16"` or `"int8"`.
        int8_io: whether the file takes and returns int8 tensors.
        input_shape: the input shape baked into the file (batch included);
            `None` for a model with several inputs (see `input_shapes`).
        input_shapes: `{input name: shape}` of every input baked into the
            file (batch included), keyed as the file's signature is.
        num_samples: inputs used for verification (0 if not verified).
        max_abs_diff: max |LiteRT - Keras| over the outputs of those
            samples (int8 outputs dequantized first); `None` if not verified.
        mean_abs_diff: mean |LiteRT - Keras|; `None` if not verified.
        argmax_agreement: fraction of samples whose argmax over the last
            axis agrees (for outputs with more than one class), else `None`.
        tolerance: the bound `max_abs_diff` was held to, or `None` when the
            error is only measured (quantized modes without a tolerance).
        ok: `True` when verified and within `tolerance` (or, with no
            tolerance, finite); `None` when not verified.
        latency_ms: median wall time of one batch-1 interpreter run on this
            machine, in milliseconds; `None` unless measured.
        num_threads: interpreter threads used for the latency measurement.
        notes: what was done differently from what was asked (a dynamic
            batch after the converter refused `batch_size=1`).

    Examples:
        >>> import keras_guided
        >>> report = keras_guided.ExportReport(path="/tmp/m.tflite", bytes=1200)
        >>> print(report.summary())
        wrote /tmp/m.tflite
          size: 1,200 bytes, quantization: float32, input shape: ()
          verification: skipped
    """

    path: str
    bytes: int
    quantization: object = None
    int8_io: bool = False
    input_shape: tuple = ()
    input_shapes: dict = dataclasses.field(default_factory=dict)
    num_samples: int = 0
    max_abs_diff: object = None
    mean_abs_diff: object = None
    argmax_agreement: object = None
    tolerance: object = None
    ok: object = None
    latency_ms: object = None
    num_threads: int = 1
    notes: list = dataclasses.field(default_factory=list)

    def summary(self):
        """Returns the report as a few human-readable lines."""
        mode = self.quantization or "float32"
        if self.int8_io:
            mode += " (int8 inputs/outputs)"
        if self.input_shape is None:  # Several inputs: name each.
            shape_text = "inputs: " + ", ".join(
                f"{name} {tuple(shape)}"
                for name, shape in self.input_shapes.items()
            )
        else:
            shape_text = f"input shape: {tuple(self.input_shape)}"
        lines = [
            f"wrote {self.path}",
            f"  size: {self.bytes:,} bytes, quantization: {mode}, "
            + shape_text,
        ]
        if self.max_abs_diff is None:
            lines.append("  verification: skipped")
        else:
            bound = (
                f" (tolerance {self.tolerance:.1e})"
                if self.tolerance is not None
                else ""
            )
            line = (
                f"  verification on {self.num_samples} inputs: max |LiteRT - "
                f"Keras| = {self.max_abs_diff:.3g}{bound}, mean "
                f"{self.mean_abs_diff:.3g}"
            )
            if self.argmax_agreement is not None:
                line += f", argmax agreement {self.argmax_agreement:.1%}"
            lines.append(line + (", ok" if self.ok else ", NOT OK"))
        if self.latency_ms is not None:
            lines.append(
                f"  latency: {self.latency_ms:.3g} ms median per run "
                f"({self.num_threads} thread(s), this machine)"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
