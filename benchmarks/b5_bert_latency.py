"""B5: a BERT-base-shaped keras-hub encoder in LiteRT, before and after.

`keras_hub.models.BertBackbone` with BERT-base's shape (12 layers, hidden
768, 12 heads, FFN 3072, WordPiece vocabulary of 30,522), random weights
(presets need a download), sequence length 128. The pruned model keeps the
stronger half (group norm) of the FFN units and of the attention heads of
every block (`prune_model(plan=...)`), the same widths in every block.
Both are exported with `keras_guided.export_tflite` (float32, and int8 with
32 calibration sequences), verified in LiteRT, and timed interleaved in one
process: rounds of base, pruned, pruned, base, each timing the min of
`--runs` invokes in the calling thread's CPU time with one interpreter
thread (robust to other processes on the machine, see B3), the ratio the
median over rounds.

    python -m benchmarks.b5_bert_latency [--quick] \\
        [--out docs/benchmarks_b5_bert.json]

`--docs docs/benchmarks.md` writes the B5 section from the JSON.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

CONFIGS = {
    "full": {
        "num_layers": 12,
        "hidden_dim": 768,
        "num_heads": 12,
        "intermediate_dim": 3072,
        "vocabulary_size": 30522,
        "sequence_length": 128,
        "rounds": 7,
        "runs": 5,
        "calibration": 32,
    },
    "quick": {
        "num_layers": 2,
        "hidden_dim": 64,
        "num_heads": 4,
        "intermediate_dim": 128,
        "vocabulary_size": 500,
        "sequence_length": 16,
        "rounds": 3,
        "runs": 3,
        "calibration": 4,
    },
}
KEEP = 0.5
SECTION = "## B5: a BERT-base encoder in LiteRT, before and after"


def inputs(cfg, count, seed=0):
    """`count` sequences of token ids, padding masks (the last quarter of
    some sequences padded) and segment ids, as BERT takes them."""
    rng = np.random.default_rng(seed)
    length = cfg["sequence_length"]
    lengths = rng.integers(length * 3 // 4, length + 1, (count, 1))
    mask = (np.arange(length) < lengths).astype("int32")
    ids = rng.integers(1, cfg["vocabulary_size"], (count, length))
    return {
        "token_ids": (ids * mask).astype("int32"),
        "segment_ids": np.zeros((count, length), "int32"),
        "padding_mask": mask,
    }


def half_plan(groups):
    """The stronger half (group norm) of every prunable group."""
    import keras_guided as kg

    scores = kg.scoring.unit_scores(groups)
    plan = {}
    for group in groups:
        if group.prunable and group.num_units > 1:
            count = int(np.ceil(KEEP * group.num_units))
            order = np.argsort(-scores[group.index], kind="stable")
            plan[group.index] = np.sort(order[:count])
    return plan


def runner(path, sample, runs):
    """`run()` -> the min ms over `runs` invokes (thread CPU time) of the
    file at `path`, fed `sample` (one sequence) through its signature."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    signature = interpreter.get_signature_runner()
    feed = {k: v[:1] for k, v in sample.items()}
    for _ in range(2):  # warm-up
        signature(**feed)

    def run():
        times = []
        for _ in range(runs):
            start = time.thread_time()
            signature(**feed)
            times.append(time.thread_time() - start)
        return 1000.0 * min(times)

    return run


def interleaved(base, pruned, rounds):
    """Median over rounds of (pruned + pruned) / (base + base), and the
    median ms of each."""
    ratios, base_ms, pruned_ms = [], [], []
    for _ in range(rounds):
        first = base()
        middle = pruned() + pruned()
        last = base()
        ratios.append(middle / (first + last))
        base_ms.append((first + last) / 2)
        pruned_ms.append(middle / 2)
    ratios = np.asarray(ratios)
    return {
        "ratio": float(np.median(ratios)),
        "spread": float(np.std(ratios) / np.mean(ratios)),
        "base_ms": float(np.median(base_ms)),
        "pruned_ms": float(np.median(pruned_ms)),
        "ratios": [float(r) for r in ratios],
    }


def run(cfg, log=print):
    import keras
    import keras_hub

    import keras_guided as kg

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=cfg["vocabulary_size"],
        num_layers=cfg["num_layers"],
        num_heads=cfg["num_heads"],
        hidden_dim=cfg["hidden_dim"],
        intermediate_dim=cfg["intermediate_dim"],
        max_sequence_length=max(512, cfg["sequence_length"]),
    )
    sample = inputs(cfg, 4, seed=1)
    groups = kg.find_unit_groups(backbone)
    plan = half_plan(groups)
    small, report = kg.prune_model(
        backbone, plan=plan, sample_inputs=sample, return_report=True
    )
    prune_s = time.perf_counter() - start
    length = cfg["sequence_length"]
    shapes = kg.graph.concrete_shapes(backbone, [(1, length)] * 3)
    small_shapes = kg.graph.concrete_shapes(small, [(1, length)] * 3)
    result = {
        "config": cfg,
        "keep": KEEP,
        "groups_pruned": len(plan),
        "params": [int(backbone.count_params()), int(small.count_params())],
        "flops": [
            kg.stats.count_flops(backbone, shapes=shapes),
            kg.stats.count_flops(small, shapes=small_shapes),
        ],
        "prune_max_abs_diff": report.max_abs_diff,
        "output_scale": report.output_scale,
        "prune_seconds": prune_s,
        "modes": {},
    }
    log(
        f"pruned in {prune_s:.0f} s: params {result['params']}, FLOPs "
        f"{result['flops']}, max diff {report.max_abs_diff:.3g}"
    )
    calibration = inputs(cfg, cfg["calibration"], seed=2)
    with tempfile.TemporaryDirectory() as directory:
        for mode in (None, "int8"):
            name = mode or "float32"
            files, verified = {}, {}
            for label, model in (("base", backbone), ("pruned", small)):
                path = os.path.join(directory, f"{label}_{name}.tflite")
                tic = time.perf_counter()
                export = kg.export_tflite(
                    model,
                    path,
                    quantization=mode,
                    representative_data=calibration if mode else None,
                    sample_inputs=sample,
                    sequence_length=length,
                )
                files[label] = path
                verified[label] = {
                    "bytes": os.path.getsize(path),
                    "max_abs_diff": export.max_abs_diff,
                    "export_seconds": time.perf_counter() - tic,
                }
                log(
                    f"{name} {label}: {verified[label]['bytes']:,} bytes, "
                    f"max diff {export.max_abs_diff:.3g} "
                    f"({verified[label]['export_seconds']:.0f} s)"
                )
            timing = interleaved(
                runner(files["base"], sample, cfg["runs"]),
                runner(files["pruned"], sample, cfg["runs"]),
                cfg["rounds"],
            )
            log(
                f"{name}: {timing['base_ms']:.1f} -> {timing['pruned_ms']:.1f}"
                f" ms, ratio {timing['ratio']:.3f} (spread "
                f"{timing['spread']:.1%})"
            )
            result["modes"][name] = {"files": verified, "latency": timing}
    return result


def section(result, command):
    """The markdown of the B5 section."""
    cfg = result["config"]
    params, flops = result["params"], result["flops"]
    lines = [
        SECTION,
        "",
        f"keras-hub `BertBackbone` shaped like BERT-base ({cfg['num_layers']}"
        f" layers, hidden {cfg['hidden_dim']}, {cfg['num_heads']} heads, FFN "
        f"{cfg['intermediate_dim']}, vocabulary {cfg['vocabulary_size']:,}), "
        "random weights, sequence length "
        f"{cfg['sequence_length']}, batch 1. Pruned: the stronger half (group "
        "norm) of the FFN units and of the heads of every block kept "
        f"({result['groups_pruned']} unit groups). LiteRT, 1 thread, each "
        f"timing the min of {cfg['runs']} invokes in thread CPU time, "
        f"{cfg['rounds']} interleaved rounds (base, pruned, pruned, base), "
        "the median ratio. Command:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Params {params[0]:,} -> {params[1]:,} ({params[1] / params[0]:.3f});"
        f" FLOPs per sequence {flops[0]:,} -> {flops[1]:,} "
        f"({flops[1] / flops[0]:.3f}, the embedding table lookups cost none);"
        f" pruned vs masked original max |diff| "
        f"{result['prune_max_abs_diff']:.2g} (output scale "
        f"{result['output_scale']:.2g}). Raw numbers: "
        "`benchmarks_b5_bert.json`.",
        "",
        "| mode | file MB (base -> pruned) | LiteRT vs Keras max diff "
        "(base, pruned) | latency ms (base -> pruned) | latency ratio "
        "(spread) | FLOPs ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, mode in result["modes"].items():
        files, timing = mode["files"], mode["latency"]
        lines.append(
            f"| {name} | {files['base']['bytes'] / 1e6:.1f} -> "
            f"{files['pruned']['bytes'] / 1e6:.1f} | "
            f"{files['base']['max_abs_diff']:.2g}, "
            f"{files['pruned']['max_abs_diff']:.2g} | "
            f"{timing['base_ms']:.1f} -> {timing['pruned_ms']:.1f} | "
            f"{timing['ratio']:.3f} ({timing['spread']:.1%}) | "
            f"{flops[1] / flops[0]:.3f} |"
        )
    int8 = result["modes"].get("int8")
    if int8:
        lines.append(
            "\nint8 (full-integer weights and activations, float32 inputs "
            "and outputs) differs from Keras by up to "
            f"{int8['files']['base']['max_abs_diff']:.2g} on these random "
            "weights: the quantization error of the activations, the same "
            "before and after pruning."
        )
    machine = result.get("machine")
    if machine:
        lines.append(
            f"\nMachine: {machine.get('cpu', 'unknown')}, "
            f"{machine.get('nproc', '?')} cores"
            + (f"; load: {result['load']}." if result.get("load") else ".")
        )
    lines.append("")
    return "\n".join(lines)


def write_docs(result, path, command):
    """Replaces (or appends) the B5 section of the benchmarks page."""
    from benchmarks import b4_report
    from benchmarks import report

    with open(path) as f:
        text = f.read()
    report.write_atomic(
        path,
        b4_report.replace_section(
            text, section(result, command), heading="## B5"
        ),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.b5_bert_latency"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tiny encoder (a smoke run)"
    )
    parser.add_argument(
        "--out", default=os.path.join("docs", "benchmarks_b5_bert.json")
    )
    parser.add_argument(
        "--docs",
        default=None,
        help="write the B5 section of this page from --out (no run)",
    )
    args = parser.parse_args(argv)
    command = "python -m benchmarks.b5_bert_latency"
    if args.docs:
        with open(args.out) as f:
            write_docs(json.load(f), args.docs, command)
        return None
    result = run(CONFIGS["quick" if args.quick else "full"])
    from benchmarks import report

    result["machine"] = report.machine()
    temporary = args.out + ".tmp"
    with open(temporary, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(temporary, args.out)
    return result


if __name__ == "__main__":
    main()
