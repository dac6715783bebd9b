"""The Keras side of B4's Torch-Pruning arm: hands the reference to
`benchmarks/b4_torch.py` in its own process and ports the result back.

The reference goes out as an `.npz` (`resnet_cifar.export_weights`) with
its logits on 64 test images (the other process checks its port against
them); the pruned, fine-tuned network comes back as an `.npz` of the same
layout and its widths, is rebuilt in Keras, and its logits on the same 64
images are checked against the PyTorch model's (max abs diff < 1e-3).
"""

import json
import os
import subprocess
import tempfile
import time

import numpy as np

from benchmarks import resnet_cifar

CHECK_IMAGES = 64
PORT_BACK_TOLERANCE = 1e-3


def missing(python):
    """Why the torch arm cannot run with `python`, or `None`."""
    if not python or not os.path.exists(python):
        return (
            f"no Python with torch and torch-pruning at {python!r} "
            "(pass --torch-python, see benchmarks/README.md)"
        )
    probe = subprocess.run(
        [python, "-c", "import torch, torch_pruning"],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        return (
            f"{python} cannot import torch and torch_pruning: "
            f"{probe.stderr.strip().splitlines()[-1:]}"
        )
    return None


def run(method, ref, fraction, data, cfg, seed, args, log, label):
    """Runs one Torch-Pruning cell; returns `(Keras model, info)` with the
    fine-tuning already done (the PyTorch process keeps its best
    validation epoch)."""
    from benchmarks import b4_cifar

    reason = missing(args.torch_python)
    if reason:
        raise b4_cifar._Skipped(reason)
    images = data["x_test"][:CHECK_IMAGES]
    expected = b4_cifar.logits(ref, images)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as directory:
        weights = os.path.join(directory, "reference.npz")
        np.savez(
            weights,
            __images=images,
            __logits=expected,
            **resnet_cifar.export_weights(ref),
        )
        request = {
            "method": method,
            "fraction": fraction,
            "seed": seed,
            "arch": cfg["arch"],
            "widths": resnet_cifar.conv_widths(ref),
            "train_images": cfg["train_images"],
            "prune_epochs": cfg["prune_epochs"],
            "finetune_epochs": cfg["finetune_epochs"],
            "lr": cfg["lr"],
            "eval_images": cfg.get("eval_images"),
            "batch_size": b4_cifar.BATCH_SIZE,
            "momentum": b4_cifar.MOMENTUM,
            "weight_decay": cfg.get("weight_decay", b4_cifar.WEIGHT_DECAY),
            # B6: TP's own sparsity-learning settings (weight decay 0,
            # `normalizer='max'`); absent in B4, which keeps its own.
            "prune_weight_decay": cfg.get("prune_weight_decay"),
            "tp_normalizer": cfg.get("tp_normalizer"),
            "kd_alpha": b4_cifar.KD_ALPHA,
            "kd_temperature": b4_cifar.KD_TEMPERATURE,
            "tp_reg": cfg.get("tp_reg", b4_cifar.TP_REG),
            "streams": {
                "prune": b4_cifar.STREAM_PRUNE,
                "finetune": b4_cifar.STREAM_FINETUNE,
            },
            "cache": args.cache,
            "threads": args.threads,
            "weights": weights,
            "label": label,
            "output": os.path.join(directory, "result.json"),
            "output_weights": os.path.join(directory, "pruned.npz"),
        }
        request_path = os.path.join(directory, "request.json")
        with open(request_path, "w") as f:
            json.dump(request, f)
        env = dict(
            os.environ, PYTHONPATH=root, OMP_NUM_THREADS=str(args.threads)
        )
        start = time.perf_counter()
        process = subprocess.Popen(
            [args.torch_python, "-m", "benchmarks.b4_torch", request_path],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        tail = []
        for line in process.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-30:]
            log(line)
        if process.wait():
            raise RuntimeError(
                f"{label} the Torch-Pruning process failed (exit "
                f"{process.returncode}):\n" + "\n".join(tail)
            )
        with open(request["output"]) as f:
            info = json.load(f)
        with np.load(request["output_weights"]) as archive:
            arrays = {k: archive[k] for k in archive.files}
    small = resnet_cifar.build(cfg["arch"], widths=info["widths"])
    resnet_cifar.import_weights(small, arrays)
    diff = float(
        np.max(
            np.abs(
                b4_cifar.logits(small, images)
                - np.asarray(info.pop("check_logits"))
            )
        )
    )
    info["port_back_max_abs_diff"] = diff
    if not diff < PORT_BACK_TOLERANCE:
        raise RuntimeError(
            f"{label} PyTorch -> Keras port of the pruned model is wrong: "
            f"max |logits diff| {diff:.3g} on {CHECK_IMAGES} test images "
            f"(allowed {PORT_BACK_TOLERANCE})"
        )
    info["subprocess_seconds"] = time.perf_counter() - start
    info.pop("widths")
    return small, info
