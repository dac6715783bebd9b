"""B4's Torch-Pruning arm, run in its own process (PyTorch only).

    /path/to/torch/python -m benchmarks.b4_torch request.json

Never imports Keras or TensorFlow: the reference weights come in an `.npz`
in the layout of `resnet_cifar.export_weights` (OIHW kernels), with the
Keras logits of 64 test images to check the port against (max abs diff
< 1e-4 times the largest |logit|, at least 1, or the process fails).
The same seeded batches as the Keras arm
come from `benchmarks/cifar.py`. The pruned, fine-tuned network goes back
as an `.npz` of the same layout plus its `{conv name: filters}`, so the
Keras side rebuilds it and counts FLOPs as for every arm. It trains on
CUDA when PyTorch sees a GPU, else on the CPU.

Methods:

- `tp_group_sl`: `GroupNormPruner` (group L2 importance, `reg`, alpha 4):
  `pruner.regularize(model)` after every backward pass of the pruning
  epochs, then global pruning stepped (`iterative_steps`) until the MACs
  kept are at most the budget;
- `tp_magnitude`: `MagnitudePruner` with group L1 importance, the same
  stepped global pruning of the reference, then the pruning epochs spent
  training.

Fine-tuning: the loss of `keras_guided.Distiller`,
`alpha * CE + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))`,
with the same SGD (momentum 0.9, Nesterov, decoupled weight decay applied
before each step as Keras does, cosine learning rate per step), keeping
the epoch with the best validation accuracy.
"""

import copy
import json
import math
import os
import sys
import time

import numpy as np

from benchmarks import cifar

STAGE_WIDTHS = (16, 32, 64)
ARCHS = {"resnet20": 3, "resnet56": 9}
PORT_TOLERANCE = 1e-4
PRUNING_STEPS = 200


def _torch():
    import torch

    return torch


def device():
    """CUDA when PyTorch sees a GPU, else the CPU."""
    torch = _torch()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def block_names(arch):
    out = []
    for stage in range(3):
        for block in range(ARCHS[arch]):
            first = block == 0 and stage > 0
            out.append((f"s{stage + 1}b{block + 1}", 2 if first else 1, first))
    return out


def batchnorm_of(conv_name):
    if "conv" in conv_name:
        return conv_name.replace("conv", "bn")
    return f"{conv_name}_bn"


def build(arch, widths, num_classes=10):
    """The PyTorch twin of `resnet_cifar.build` at `widths`."""
    torch = _torch()
    nn = torch.nn

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = block_names(arch)
            self.layers = nn.ModuleDict()

            def conv_bn(name, cin, cout, kernel, stride):
                self.layers[name] = nn.Conv2d(
                    cin,
                    cout,
                    kernel,
                    stride=stride,
                    padding=1 if kernel == 3 else 0,
                    bias=False,
                )
                self.layers[batchnorm_of(name)] = nn.BatchNorm2d(
                    cout, eps=1e-5, momentum=0.1
                )

            conv_bn("stem_conv", 3, widths["stem_conv"], 3, 1)
            channels = widths["stem_conv"]
            for prefix, stride, projection in self.blocks:
                conv_bn(
                    f"{prefix}_conv1",
                    channels,
                    widths[f"{prefix}_conv1"],
                    3,
                    stride,
                )
                conv_bn(
                    f"{prefix}_conv2",
                    widths[f"{prefix}_conv1"],
                    widths[f"{prefix}_conv2"],
                    3,
                    1,
                )
                if projection:
                    conv_bn(
                        f"{prefix}_proj",
                        channels,
                        widths[f"{prefix}_proj"],
                        1,
                        stride,
                    )
                channels = widths[f"{prefix}_conv2"]
            self.layers["fc"] = nn.Linear(channels, num_classes)

        def forward(self, x):
            layers = self.layers
            relu = torch.nn.functional.relu
            x = relu(layers["stem_bn"](layers["stem_conv"](x)))
            for prefix, _, projection in self.blocks:
                y = relu(layers[f"{prefix}_bn1"](layers[f"{prefix}_conv1"](x)))
                y = layers[f"{prefix}_bn2"](layers[f"{prefix}_conv2"](y))
                if projection:
                    x = layers[f"{prefix}_proj_bn"](layers[f"{prefix}_proj"](x))
                x = relu(y + x)
            x = x.mean(dim=(2, 3))
            return layers["fc"](x)

    return ResNet()


def load_arrays(model, arrays):
    """Copies `export_weights`-layout arrays into the PyTorch twin."""
    torch = _torch()
    state = {}
    for key, value in arrays.items():
        state[f"layers.{key}"] = torch.from_numpy(np.asarray(value))
    missing = set(model.state_dict()) - set(state)
    missing = {k for k in missing if not k.endswith("num_batches_tracked")}
    if missing:
        raise ValueError(f"weights missing for {sorted(missing)}")
    model.load_state_dict(state, strict=False)
    return model


def export_arrays(model):
    """The inverse of `load_arrays`: `{layer.param: array}`."""
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        out[key[len("layers.") :]] = (
            value.detach().cpu().numpy().astype("float32")
        )
    return out


def widths_of(model):
    torch = _torch()
    return {
        name: int(m.out_channels)
        for name, m in model.layers.items()
        if isinstance(m, torch.nn.Conv2d)
    }


def _nchw(x):
    """NHWC numpy -> an NCHW tensor in channels-last memory (a view: the
    layout PyTorch's CPU convolutions run fastest in, about 2x here)."""
    torch = _torch()
    return (
        torch.from_numpy(np.ascontiguousarray(x))
        .permute(0, 3, 1, 2)
        .to(device(), memory_format=torch.channels_last)
    )


def channels_last(model):
    """`model` with its weights in channels-last memory (in place; again
    after pruning, which allocates new weights)."""
    return model.to(memory_format=_torch().channels_last)


def predict(model, x):
    torch = _torch()
    channels_last(model).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), 1000):
            out.append(
                model(_nchw(cifar.normalize(x[start : start + 1000])))
                .cpu()
                .numpy()
            )
    return np.concatenate(out)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(predict(model, x), -1) == y))


def check_port(model, images, expected):
    """Fails loudly unless the ported model's logits match Keras'."""
    got = predict(model, images)
    diff = float(np.max(np.abs(got - expected)))
    allowed = PORT_TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
    if not diff < allowed:
        raise RuntimeError(
            f"Keras -> PyTorch weight port is wrong: max |logits diff| "
            f"{diff:.3g} on {len(images)} test images (allowed "
            f"{allowed:.3g}: {PORT_TOLERANCE} times the largest |logit|, "
            "at least 1). Check the kernel layout (HWIO -> OIHW), "
            "the BN statistics and the padding."
        )
    return diff


def macs(model):
    import torch_pruning as tp

    torch = _torch()
    ops, _ = tp.utils.count_ops_and_params(
        model, torch.zeros(1, 3, 32, 32, device=device())
    )
    return int(ops)


def train(
    model,
    data,
    request,
    stream,
    epochs,
    lr,
    pruner=None,
    teacher=None,
    log=print,
    label="",
    on_epoch=None,
    weight_decay=None,
):
    """SGD epochs on the seeded batches of `stream`, the same optimizer as
    the Keras arm; with `teacher`, the distillation loss. `weight_decay`
    (decoupled) defaults to the request's."""
    torch = _torch()
    functional = torch.nn.functional
    if epochs <= 0:
        return
    channels_last(model)
    steps = cifar.steps_per_epoch(
        data, request["train_images"], request["batch_size"]
    )
    total = epochs * steps
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        parameters,
        lr=lr,
        momentum=request["momentum"],
        nesterov=True,
        weight_decay=0.0,
    )
    alpha, temperature = request["kd_alpha"], request["kd_temperature"]
    if weight_decay is None:
        weight_decay = request["weight_decay"]
    step = 0
    for epoch in range(epochs):
        model.train()
        seen, correct, loss_sum = 0, 0, 0.0
        for x, y in cifar.epoch_batches(
            data,
            request["seed"],
            stream,
            epoch,
            request["train_images"],
            request["batch_size"],
        ):
            rate = lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            for group in optimizer.param_groups:
                group["lr"] = rate
            inputs = _nchw(x)
            labels = torch.from_numpy(y).long().to(inputs.device)
            out = model(inputs)
            loss = functional.cross_entropy(out, labels)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(inputs)
                soft = functional.kl_div(
                    functional.log_softmax(out / temperature, -1),
                    functional.log_softmax(target / temperature, -1),
                    reduction="batchmean",
                    log_target=True,
                )
                loss = alpha * loss + (1 - alpha) * temperature**2 * soft
            optimizer.zero_grad()
            loss.backward()
            if pruner is not None:
                pruner.regularize(model)
            with torch.no_grad():
                for p in parameters:  # decoupled decay, as Keras' SGD
                    p.mul_(1.0 - rate * weight_decay)
            optimizer.step()
            step += 1
            seen += len(y)
            correct += int((out.argmax(-1) == labels).sum())
            loss_sum += float(loss.detach()) * len(y)
        log(
            f"{label} torch epoch {epoch + 1}: loss {loss_sum / seen:.4f} "
            f"train acc {correct / seen:.4f}"
        )
        if on_epoch is not None:
            on_epoch(epoch)


def prune_to_budget(model, pruner, fraction, log, label):
    """Steps the pruner until the MACs kept are at most `fraction`."""
    start = macs(model)
    current = start
    while current > fraction * start:
        if pruner.current_step >= pruner.iterative_steps:
            raise RuntimeError(
                f"{label} Torch-Pruning stopped at MACs kept "
                f"{current / start:.4f} after {pruner.iterative_steps} "
                f"steps; the budget is {fraction:.4f}"
            )
        pruner.step()
        current = macs(model)
    log(
        f"{label} Torch-Pruning cut to MACs kept {current / start:.4f} in "
        f"{pruner.current_step} steps"
    )
    return start, current


def make_pruner(method, model, request):
    import torch_pruning as tp

    torch = _torch()
    common = dict(
        example_inputs=torch.zeros(1, 3, 32, 32, device=device()),
        global_pruning=True,
        pruning_ratio=1.0,
        max_pruning_ratio=0.95,
        iterative_steps=PRUNING_STEPS,
        ignored_layers=[model.layers["fc"]],
    )
    if method == "tp_group_sl":
        normalizer = request.get("tp_normalizer")
        importance = (
            tp.importance.GroupMagnitudeImportance(p=2, normalizer=normalizer)
            if normalizer
            else tp.importance.GroupMagnitudeImportance(p=2)
        )
        return tp.pruner.GroupNormPruner(
            model,
            importance=importance,
            reg=request["tp_reg"],
            alpha=4,
            **common,
        )
    if method == "tp_magnitude":
        return tp.pruner.MagnitudePruner(
            model,
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            **common,
        )
    raise ValueError(
        f"method must be tp_group_sl or tp_magnitude. Received: {method!r}"
    )


def run(request, log=print):
    import torch_pruning as tp

    torch = _torch()
    torch.set_num_threads(request.get("threads", 2))
    torch.manual_seed(request["seed"])
    start = time.perf_counter()
    data = cifar.split(cifar.load(None, request["cache"]))
    cifar.shrink_evaluation(data, request.get("eval_images"))
    with np.load(request["weights"]) as archive:
        arrays = {k: archive[k] for k in archive.files}
    check_images, check_logits = arrays.pop("__images"), arrays.pop("__logits")
    widths = (
        json.loads(request["widths"])
        if isinstance(request["widths"], str)
        else request["widths"]
    )
    teacher = load_arrays(build(request["arch"], widths), arrays).to(device())
    port_diff = check_port(teacher, check_images, check_logits)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    model = copy.deepcopy(teacher)
    for p in model.parameters():
        p.requires_grad_(True)
    method, fraction = request["method"], request["fraction"]
    label = request.get("label", "")
    epochs = request["prune_epochs"]
    info = {
        "port_max_abs_diff": port_diff,
        "torch_pruning_version": tp.__version__,
        "torch_version": torch.__version__,
        "torch_device": str(device()),
        "torch_memory_format": "channels_last",
    }
    if method == "tp_group_sl":
        info["tp_reg"] = request["tp_reg"]
        info["tp_normalizer"] = request.get("tp_normalizer") or "mean"
        sparsity_decay = request.get("prune_weight_decay")
        info["sparsity_weight_decay"] = (
            request["weight_decay"]
            if sparsity_decay is None
            else sparsity_decay
        )
    if method == "tp_group_sl":
        pruner = make_pruner(method, model, request)
        train(
            model,
            data,
            request,
            cifar_stream(request, "prune"),
            epochs,
            request["lr"],
            pruner=pruner,
            log=log,
            label=label,
            weight_decay=request.get("prune_weight_decay"),
        )
        base, kept = prune_to_budget(model, pruner, fraction, log, label)
        after = _after_cut(model, data)
    else:
        pruner = make_pruner(method, model, request)
        base, kept = prune_to_budget(model, pruner, fraction, log, label)
        after = _after_cut(model, data)
        train(
            model,
            data,
            request,
            cifar_stream(request, "prune"),
            epochs,
            request["lr"],
            log=log,
            label=label,
        )
    info.update(after)
    info.update(
        {
            "torch_macs": kept,
            "torch_macs_reference": base,
            "torch_macs_kept": kept / base,
        }
    )
    pruned_seconds = time.perf_counter() - start
    # The common fine-tuning: distillation, best validation epoch kept.
    history = [accuracy(model, data["x_val"], data["y_val"])]
    info["val_before_finetune_torch"] = history[0]
    best = {"epoch": 0, "state": copy.deepcopy(model.state_dict())}

    def keep_best(epoch):
        value = accuracy(model, data["x_val"], data["y_val"])
        history.append(value)
        log(f"{label} torch fine-tune epoch {epoch + 1}: val {value:.4f}")
        if value > history[best["epoch"]]:
            best.update(
                epoch=epoch + 1, state=copy.deepcopy(model.state_dict())
            )

    train(
        model,
        data,
        request,
        cifar_stream(request, "finetune"),
        request["finetune_epochs"],
        request["lr"],
        teacher=teacher,
        log=log,
        label=label,
        on_epoch=keep_best,
    )
    model.load_state_dict(best["state"])
    info.update(
        {
            "finetune_epoch_chosen": best["epoch"],
            "val_per_finetune_epoch": history,
            "torch_val": accuracy(model, data["x_val"], data["y_val"]),
            "torch_test": accuracy(model, data["x_test"], data["y_test"]),
            "torch_pruning_seconds": pruned_seconds,
            "torch_seconds": time.perf_counter() - start,
            "widths": widths_of(model),
            "check_logits": predict(model, check_images).tolist(),
        }
    )
    out = export_arrays(model)
    np.savez(request["output_weights"], **out)
    return info


def cifar_stream(request, phase):
    return request["streams"][phase]


def _after_cut(model, data):
    return {
        "val_after_cut": accuracy(model, data["x_val"], data["y_val"]),
        "test_after_cut": accuracy(model, data["x_test"], data["y_test"]),
    }


def main(argv):
    if len(argv) != 1:
        raise SystemExit("usage: python -m benchmarks.b4_torch request.json")
    with open(argv[0]) as f:
        request = json.load(f)

    def log(message):
        print(message, flush=True)

    info = run(request, log)
    temporary = request["output"] + ".tmp"
    with open(temporary, "w") as f:
        json.dump(info, f, indent=1)
    os.replace(temporary, request["output"])


if __name__ == "__main__":
    main(sys.argv[1:])
