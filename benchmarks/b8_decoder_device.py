"""B8: a pruned keras-hub decoder on device: LiteRT file size, latency and
token agreement, before and after.

Builds a keras-hub `LlamaCausalLM` with random weights (offline, no
preset), prunes it to each asked share of its parameters as B7 does
(`uniform_blocks=True`, the embedding / output head and the attention
protected, so the feed-forward units go and the result stays a
`LlamaCausalLM`), and writes the original and every pruned model with
`keras_guided.export_tflite(..., quantization="dynamic")` (int8 weights,
float activations; batch 1, `--length` tokens), verified there against
Keras. Reported per file:

- bytes of the exact file `export_tflite` wrote;
- token agreement: the share of positions, over the verification samples,
  where the file's most likely next token is Keras' (`ExportReport.
  argmax_agreement`), and the max |LiteRT - Keras| of the logits;
- latency: the files timed interleaved by `benchmarks.b3_retime.retime`
  (one LiteRT thread, thread CPU time per invoke, 21 rounds x 10 invokes),
  nothing of the library's timer. One invoke computes the logits of all
  `--length` positions: it is the cost of one generated token at that
  context length without a key/value cache (what this file does), and
  divided by the length it is the per-token cost of reading a prompt.

    PYTHONPATH=. python -m benchmarks.b8_decoder_device --shares 0.75,0.5 \\
        --out docs/benchmarks_b8_decoder_device.json --docs docs/benchmarks.md
"""

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks import report  # noqa: E402

SHAPE = dict(
    vocabulary_size=8000,
    num_layers=8,
    hidden_dim=512,
    num_query_heads=8,
    num_key_value_heads=2,
    intermediate_dim=1536,
)
BEGIN = "<!-- b8:begin -->"
END = "<!-- b8:end -->"
HEADING = "## B8: a pruned decoder on device (LiteRT, int8 weights)"


def build(seed=0):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.LlamaBackbone(**SHAPE)
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def samples(length, count=8, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(
            1, SHAPE["vocabulary_size"], size=(count, length)
        ).astype("int32"),
        "padding_mask": np.ones((count, length), "int32"),
    }


def prune(model, share, sample_inputs):
    """`model` kept at `share` of its parameters as B7 prunes: the
    feed-forward units go, the result stays a `LlamaCausalLM`."""
    import keras_guided

    return keras_guided.prune_model(
        model,
        target={"params": share},
        uniform_blocks=True,
        protected=["token_embedding", "self_attention"],
        on_unsupported="keep",
        sample_inputs=sample_inputs,
    )


def run(shares, length, directory, log=print):
    import keras_guided
    from benchmarks import b3_retime

    model = build()
    x = samples(length)
    models = [("original", 1.0, model)]
    for share in shares:
        start = time.perf_counter()
        small = prune(model, share, x)
        log(f"pruned to {share}: {time.perf_counter() - start:.0f} s")
        models.append((f"params {share}", share, small))
    rows, paths = [], []
    for name, share, m in models:
        path = os.path.join(directory, f"llama_{share}.tflite")
        start = time.perf_counter()
        report = keras_guided.export_tflite(
            m,
            path,
            quantization="dynamic",
            sample_inputs=x,
            sequence_length=length,
        )
        log(
            f"{name}: {report.bytes / 1e6:.1f} MB, agreement "
            f"{report.argmax_agreement:.4f} "
            f"({time.perf_counter() - start:.0f} s)"
        )
        rows.append(
            {
                "model": name,
                "asked_share": share,
                "class": type(m).__name__,
                "params": report.param_count(m),
                "intermediate_dim": m.backbone.get_config()["intermediate_dim"]
                if hasattr(m, "backbone")
                else None,
                "bytes": report.bytes,
                "token_agreement": report.argmax_agreement,
                "max_abs_diff": report.max_abs_diff,
                "num_samples": report.num_samples,
            }
        )
        paths.append(path)
    timing = b3_retime.retime(paths)
    for row, timed in zip(rows, timing["files"]):
        row["ms_per_invoke"] = timed["median_ms"]
        row["ms_per_prompt_token"] = timed["median_ms"] / length
        row["latency_ratio"] = timed["ratio"]
        row["round_ratio_median"] = timed["round_ratio_median"]
        row["round_ratio_spread"] = timed["round_ratio_spread"]
    return {
        "benchmark": (
            "B8: keras-hub LlamaCausalLM (random weights) pruned with "
            "target={'params': share}, uniform_blocks=True, protected="
            "['token_embedding', 'self_attention']; export_tflite("
            "quantization='dynamic', batch 1)"
        ),
        "shape": SHAPE,
        "length": length,
        "clock": timing["clock"],
        "rounds": timing["rounds"],
        "runs_per_round": timing["runs_per_round"],
        "rows": rows,
    }


def greedy_check(
    share, length, directory, prompts=4, prompt_length=16, steps=32, log=print
):
    """The float32 file of the model pruned to `share` against Keras'
    own `generate()` (greedy, with its key/value cache): `steps` tokens
    after each of `prompts` random prompts. The file has no cache: each
    step runs it on the whole window and reads the last filled position.
    Returns `{"share", "prompts", "steps", "same_tokens": [per prompt],
    "max_abs_diff"}`."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    import keras_guided

    small = prune(build(), share, samples(length))
    path = os.path.join(directory, f"greedy_{share}.tflite")
    report = keras_guided.export_tflite(
        small, path, sample_inputs=samples(length), sequence_length=length
    )
    with open(path, "rb") as f:
        interpreter = Interpreter(model_content=f.read(), num_threads=1)
    runner = interpreter.get_signature_runner()
    small.compile(sampler="greedy")
    rng = np.random.default_rng(5)
    same = []
    for _ in range(prompts):
        ids = np.zeros((1, length), "int32")
        mask = np.zeros((1, length), "int32")
        ids[0, :prompt_length] = rng.integers(
            1, SHAPE["vocabulary_size"], prompt_length
        )
        mask[0, :prompt_length] = 1
        keras_ids = small.generate(
            {"token_ids": ids.copy(), "padding_mask": mask.copy()},
            max_length=prompt_length + steps,
            stop_token_ids=None,
        )["token_ids"]
        for position in range(prompt_length, prompt_length + steps):
            (logits,) = runner(token_ids=ids, padding_mask=mask).values()
            ids[0, position] = int(np.argmax(logits[0, position - 1]))
            mask[0, position] = 1
        end = prompt_length + steps
        same.append(
            int(
                np.sum(
                    np.asarray(keras_ids)[0, prompt_length:end]
                    == ids[0, prompt_length:end]
                )
            )
        )
    log(f"greedy, float32, share {share}: {same} of {steps} tokens the same")
    return {
        "share": share,
        "class": type(small).__name__,
        "prompts": prompts,
        "prompt_length": prompt_length,
        "steps": steps,
        "same_tokens": same,
        "max_abs_diff": report.max_abs_diff,
        "bytes": report.bytes,
    }


def table(result):
    base = result["rows"][0]
    lines = [
        "| model | class | parameters | file | token agreement | max logit "
        f"diff | ms per invoke ({result['length']} tokens) | ms per prompt "
        "token | latency ratio | file ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['model']} | {row['class']} | {row['params'] / 1e6:.1f} M "
            f"| {row['bytes'] / 1e6:.1f} MB | {row['token_agreement']:.4f} | "
            f"{row['max_abs_diff']:.3g} | {row['ms_per_invoke']:.1f} | "
            f"{row['ms_per_prompt_token']:.2f} | "
            f"{row['latency_ratio']:.3f} (per round "
            f"{row['round_ratio_median']:.3f} ± "
            f"{row['round_ratio_spread']:.3f}) | "
            f"{row['bytes'] / base['bytes']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def section(result, command):
    shape = result["shape"]
    text = (
        ""
        "`benchmarks/b8_decoder_device.py` builds a keras-hub `LlamaCausalLM` "
        f"with random weights ({shape['num_layers']} layers, hidden "
        f"{shape['hidden_dim']}, {shape['num_query_heads']}/"
        f"{shape['num_key_value_heads']} heads, FFN "
        f"{shape['intermediate_dim']}, vocabulary {shape['vocabulary_size']}),"
        " prunes it as B7 does (the feed-forward units go; the result stays a "
        "`LlamaCausalLM`) and writes every model with `export_tflite(..., "
        'quantization="dynamic")` (int8 weights, float activations, batch 1, '
        f"{result['length']} tokens). The sizes are the exact files written; "
        "token agreement is the share of positions of the verification "
        "samples where the file's most likely next token is Keras'; latency "
        "is the files timed interleaved by B3's independent timer (one LiteRT"
        f" thread, thread CPU time, {result['rounds']} rounds x "
        f"{result['runs_per_round']} invokes). One invoke computes the logits "
        "of every position: it is the cost of one generated token at that "
        "context length without a key/value cache, and per prompt token "
        "divided by the length. Random weights: the quality of a pruned "
        "decoder is not measured here, and their logits are nearly flat (a "
        "random decoder has no favourite next token), so int8 weight "
        "rounding flips the most likely token at several per cent of the "
        "positions; how often it flips on a trained decoder is not "
        "measured here."
    )
    if result.get("conditions"):
        text += " " + result["conditions"]
    return (
        f"{HEADING}\n\n{textwrap.fill(text, 76)}\n\n"
        f"```bash\n{command}\n```\n\n{BEGIN}\n{body(result)}{END}\n"
    )


def body(result):
    """What lies between the page's markers: the table and the float32
    generation check."""
    return table(result) + greedy_text(result)


def greedy_text(result):
    """The float32 generation check, as a paragraph (empty when not run)."""
    check = result.get("greedy_float32")
    if not check:
        return ""
    same = check["same_tokens"]
    text = (
        f"Generation: the model kept at {check['share']} of its parameters, "
        "exported in float32, generates greedily, one invoke per token on "
        "the whole window; Keras' `generate()` (greedy sampler, with its "
        f"key/value cache) gives {sum(same)} of {len(same) * check['steps']}"
        f" tokens the same ({same} of {check['steps']} after each of "
        f"{check['prompts']} random prompts of {check['prompt_length']} "
        f"tokens; the file's logits within {check['max_abs_diff']:.2g} of "
        "Keras'). Command: `PYTHONPATH=. python -m "
        f"benchmarks.b8_decoder_device --greedy-only {check['share']} --out "
        "docs/benchmarks_b8_decoder_device.json --docs docs/benchmarks.md`."
    )
    return "\n" + textwrap.fill(text, 76) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shares", default="0.75,0.5")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--out", default=None)
    parser.add_argument("--docs", default=None)
    parser.add_argument(
        "--conditions", default="", help="what else ran, for the page"
    )
    parser.add_argument(
        "--greedy-only",
        type=float,
        default=None,
        help="only the float32 generation check at this share, added to "
        "the JSON of --out",
    )
    args = parser.parse_args(argv)

    log = report.clock_log

    if args.greedy_only is not None:
        with open(args.out) as f:
            result = json.load(f)
        with tempfile.TemporaryDirectory() as directory:
            result["greedy_float32"] = greedy_check(
                args.greedy_only, args.length, directory, log=log
            )
        report.write_atomic(args.out, json.dumps(result, indent=1) + "\n")
        if args.docs:
            report.write_region(
                args.docs,
                BEGIN,
                END,
                body(result),
                section(result, result["command"]),
            )
        return
    shares = [float(s) for s in args.shares.split(",")]
    with tempfile.TemporaryDirectory() as directory:
        result = run(shares, args.length, directory, log)
    command = report.command_line("benchmarks.b8_decoder_device", argv)
    result["command"] = command
    result["conditions"] = args.conditions
    result["machine"] = report.machine()
    if args.out:
        report.write_atomic(args.out, json.dumps(result, indent=1) + "\n")
    if args.docs:
        report.write_region(
            args.docs, BEGIN, END, body(result), section(result, command)
        )
    print(table(result))


if __name__ == "__main__":
    sys.exit(main())
