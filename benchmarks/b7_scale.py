"""B7: memory and time of `prune_model` on a keras-hub decoder at scale.

Builds a keras-hub `LlamaCausalLM` with random weights (offline, no
preset) at a named size and prunes it to three quarters of its
parameters with `uniform_blocks=True`, the embedding / output head and
the attention heads protected (one `LlamaBackbone` config cannot say
fewer heads per block, so the feed-forward units are what goes), as the
keras-hub tests do:

    prune_model(model, target={"params": 0.75}, uniform_blocks=True,
                protected=["token_embedding", "self_attention"],
                on_unsupported="keep", return_report=True)

Sizes (vocabulary 32,000, untied output head, head dim 64 below 1b;
`tiny`, vocabulary 256, is a smoke test):

| size | layers | hidden | query / kv heads | FFN | parameters |
|---|---|---|---|---|---|
| 100m | 8 | 768 | 12 / 4 | 2048 | 99.5 M |
| 250m | 16 | 1024 | 16 / 4 | 2816 | 246.5 M |
| 1b | 22 | 2048 | 32 / 4 | 5632 | 1,100 M (TinyLlama-1.1B) |

Each size runs in its own process (peak resident set is per process).
Recorded: wall seconds of each phase of `prune_model` (the functions of
`keras_guided.surgery._prune` it calls, wrapped here for timing only),
the peak resident set (`getrusage` and a 50 ms `/proc/self/status`
sampler, with the peak inside each phase), the model's bytes, the ratio
peak / bytes, whether the result is still a `LlamaCausalLM`, and the max
difference against the masked original. `--max-rss-gb` stops the run
(recorded, exit code 3) when the resident set passes it, so a size that
does not fit is measured up to where it stopped.

    PYTHONPATH=. python -m benchmarks.b7_scale --size 100m --out b7_100m.json
"""

import argparse
import gc
import json
import os
import platform
import resource
import sys
import threading
import time

from benchmarks.report import command_line
from benchmarks.report import param_count
from benchmarks.report import variable_size

SIZES = {
    "tiny": dict(
        num_layers=2,
        hidden_dim=64,
        num_query_heads=4,
        num_key_value_heads=2,
        intermediate_dim=128,
        vocabulary_size=256,
    ),
    "100m": dict(
        num_layers=8,
        hidden_dim=768,
        num_query_heads=12,
        num_key_value_heads=4,
        intermediate_dim=2048,
    ),
    "250m": dict(
        num_layers=16,
        hidden_dim=1024,
        num_query_heads=16,
        num_key_value_heads=4,
        intermediate_dim=2816,
    ),
    "1b": dict(
        num_layers=22,
        hidden_dim=2048,
        num_query_heads=32,
        num_key_value_heads=4,
        intermediate_dim=5632,
    ),
}
VOCABULARY = 32000
PHASES = {
    # name in keras_guided.surgery._prune -> phase
    "graph_lib.analyze": "analysis",
    "choose_plan": "planning",
    "apply_plan": "rebuild_and_copy",
    "_verify": "verification",
    "_as_hub_class": "hub_rebuild",
}


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """VmRSS every `interval` seconds: the timeline, the peak since the
    last `mark`, and a stop when it passes `limit` bytes."""

    def __init__(self, interval=0.05, limit=None, on_limit=None):
        self.interval = interval
        self.limit = limit
        self.on_limit = on_limit
        self.start = time.perf_counter()
        self.timeline = []
        self.phase_peak = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        last_logged = -1.0
        while not self._stop.is_set():
            rss = _rss_bytes()
            now = time.perf_counter() - self.start
            self.phase_peak = max(self.phase_peak, rss)
            self.peak = max(self.peak, rss)
            if now - last_logged >= 0.5:
                self.timeline.append((round(now, 2), rss))
                last_logged = now
            if self.limit is not None and rss > self.limit:
                self.on_limit(now, rss)
            time.sleep(self.interval)

    def mark(self):
        """The peak since the last mark, and a new phase begins."""
        peak = max(self.phase_peak, _rss_bytes())
        self.phase_peak = 0
        return peak

    def stop(self):
        self._stop.set()
        self._thread.join()


def _instrument(sampler, phases):
    """Wraps the steps of `prune_model` to time them and read the peak
    inside each; `phases` collects `{phase, seconds, peak_rss, ...}`."""
    from keras_guided import graph as graph_lib
    from keras_guided.surgery import _prune

    def wrap(function, phase):
        def timed(*args, **kwargs):
            sampler.mark()
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases.append(
                    {
                        "phase": phase,
                        "seconds": round(time.perf_counter() - start, 2),
                        "peak_rss": sampler.mark(),
                        "rss_after": _rss_bytes(),
                    }
                )

        return timed

    class Graph:  # graph_lib with `analyze` timed, the rest as it is
        def __getattr__(self, name):
            return getattr(graph_lib, name)

    wrapped = Graph()
    wrapped.analyze = wrap(graph_lib.analyze, "analysis")
    _prune.graph_lib = wrapped
    for name, phase in PHASES.items():
        if "." not in name:
            setattr(_prune, name, wrap(getattr(_prune, name), phase))


def build(size, dtype="float32"):
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    shape = {"vocabulary_size": VOCABULARY, **SIZES[size]}
    backbone = keras_hub.models.LlamaBackbone(dtype=dtype, **shape)
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def run(size, dtype="float32", max_rss=None):
    result = {"size": size, "dtype": dtype, "stopped": None}
    phases = []

    def on_limit(now, rss):
        result["stopped"] = (
            f"resident set {rss / 1e9:.2f} GB passed the {max_rss / 1e9:.1f}"
            f" GB limit at {now:.1f} s, in "
            f"{phases[-1]['phase'] if phases else 'a phase'} or after it"
        )
        result["phases"] = phases
        result["peak_rss_sampled"] = rss
        result["timeline"] = sampler.timeline
        _write(result)
        print(result["stopped"], file=sys.stderr, flush=True)
        os._exit(3)

    sampler = Sampler(limit=max_rss, on_limit=on_limit)
    import keras_hub

    import keras_guided

    result["rss_after_import"] = _rss_bytes()
    start = time.perf_counter()
    model = build(size, dtype)
    result["build_seconds"] = round(time.perf_counter() - start, 2)
    params = param_count(model)
    model_bytes = sum(_nbytes(v) for v in model.weights)
    result.update(params=params, model_bytes=model_bytes)
    gc.collect()
    result["rss_before_prune"] = _rss_bytes()
    sampler.mark()
    _instrument(sampler, phases)
    start = time.perf_counter()
    small, report = keras_guided.prune_model(
        model,
        target={"params": 0.75},
        uniform_blocks=True,
        protected=["token_embedding", "self_attention"],
        on_unsupported="keep",
        return_report=True,
    )
    result["prune_seconds"] = round(time.perf_counter() - start, 2)
    sampler.stop()
    peak = max(
        sampler.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    kept = param_count(small)
    result.update(
        phases=phases,
        peak_rss=peak,
        peak_rss_sampled=sampler.peak,
        peak_over_model_bytes=round(peak / model_bytes, 2),
        extra_over_model_bytes=round(
            (peak - result["rss_before_prune"]) / model_bytes, 2
        ),
        kept_params=kept,
        kept_share=round(kept / params, 4),
        is_llama_causal_lm=type(small) is keras_hub.models.LlamaCausalLM,
        intermediate_dim=small.backbone.get_config()["intermediate_dim"]
        if hasattr(small, "backbone")
        else None,
        max_abs_diff=report.max_abs_diff,
        output_scale=report.output_scale,
        timeline=sampler.timeline,
    )
    return result


def _nbytes(variable):
    import keras

    dtype = keras.backend.standardize_dtype(variable.dtype)
    width = {"float16": 2, "bfloat16": 2, "float64": 8}.get(dtype, 4)
    return variable_size(variable) * width


_OUT = {}


def _write(result):
    path = _OUT.get("path")
    if not path:
        return
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    result = dict(result, machine=machine)
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(temporary, path)


def row(result):
    gb = 1e9
    if result.get("stopped"):
        return (
            f"| {result['size']} | {result['dtype']} | "
            f"{result.get('params', 0) / 1e6:.1f} M | "
            f"{result.get('model_bytes', 0) / gb:.2f} | stopped: "
            f"{result['stopped']} | | | |"
        )
    phases = ", ".join(
        f"{p['phase']} {p['seconds']:.1f}" for p in result["phases"]
    )
    kind = "LlamaCausalLM" if result["is_llama_causal_lm"] else "not the class"
    return (
        f"| {result['size']} | {result['dtype']} | "
        f"{result['params'] / 1e6:.1f} M | {result['model_bytes'] / gb:.2f} | "
        f"{result['prune_seconds']:.1f} s ({phases}) | "
        f"{result['peak_rss'] / gb:.2f} GB | "
        f"{result['peak_over_model_bytes']:.2f}x | "
        f"{kind}, max diff {result['max_abs_diff']:.2g} |"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="100m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--max-rss-gb",
        type=float,
        default=7.5,
        help="stop (exit code 3) when the resident set passes this",
    )
    args = parser.parse_args(argv)
    _OUT["path"] = args.out
    result = run(args.size, args.dtype, max_rss=args.max_rss_gb * 1e9)
    result["command"] = command_line("benchmarks.b7_scale", argv)
    _write(result)
    print(
        "| size | dtype | params | GB | prune seconds (phases) | peak RSS "
        "| peak / bytes | result |\n|---|---|---|---|---|---|---|---|"
    )
    print(row(result))


if __name__ == "__main__":
    main()
