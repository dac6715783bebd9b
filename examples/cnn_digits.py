"""A small CNN with BatchNormalization: train to be cut, cut, fine-tune, int8.

The whole keras_guided workflow on scikit-learn's bundled 8x8 digits:

1. train a CNN (Conv-BN-ReLU blocks, Flatten, Dense head) with the budget
   recipe, `keras_guided.GuidedPruning(target={"flops": 0.1})`: each
   filter's unit group (its kernel slice and bias, the BatchNormalization
   gamma and beta after it, and the matching input slices of the next
   layer, through Flatten) is shrunk as one, so whole filters reach exact
   zero, and the callback steers the penalty so the live network lands on
   10 % of the FLOPs, then lets it recover;
2. remove them with `keras_guided.prune_model` (the constant a dead filter
   still emits, BN's beta through the ReLU, is folded into the next layer's
   bias, so the result computes what the trained model computes);
3. fine-tune the smaller model by distillation from the trained one
   (`keras_guided.Distiller`);
4. export it with `keras_guided.export_tflite(quantization="int8")`,
   calibrated on training images and verified in the LiteRT interpreter.

    python examples/cnn_digits.py --quick
    python examples/cnn_digits.py --out my_run

Artifacts in `--out` (default `./out_cnn_digits`): `trained.keras`,
`pruned.keras`, `pruned_float32.tflite`, `pruned_int8.tflite`.
"""

import argparse
import os
import time

# Keep TensorFlow's C++ start-up logs out of the example's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

# Full run and `--quick` (a smoke test). No strength to guess: the budget
# controller calibrates and steers it.
SETTINGS = {
    "full": {"epochs": 30, "finetune_epochs": 5},
    "quick": {"epochs": 4, "finetune_epochs": 1},
}
LEARNING_RATE = 3e-3
BATCH_SIZE = 64


def load_data(seed):
    """Digits as (x_train, y_train, x_test, y_test), images (8, 8, 1)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target,
        test_size=0.2,
        random_state=seed,
        stratify=digits.target,
    )
    return x_train, y_train, x_test, y_test


def build_cnn():
    """Two Conv-BN-ReLU-pool blocks, Flatten, a Dense head.

    BatchNormalization(momentum=0.9): the moving statistics follow the
    weights closely, which matters when the proximal step keeps changing
    them (the default 0.99 lags behind on a dataset this small).
    """
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = inputs
    for index, filters in enumerate((16, 32), start=1):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", name=f"conv{index}"
        )(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def compile_model(model, learning_rate):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def accuracy(model, x, y):
    """Keras test accuracy with a direct call (no compiled predict step)."""
    import keras

    probabilities = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.argmax(probabilities, -1) == y))


def tflite_accuracy(path, x, y):
    """Test accuracy of a .tflite file, run in the LiteRT interpreter.

    The file has float32 inputs and outputs (int8 inside), batch size 1.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    correct = 0
    for image, label in zip(x, y):
        interpreter.set_tensor(input_index, image[None])
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(output_index)) == label)
    return correct / len(x)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Small CNN on digits: GuidedPruning (proximal), "
        "prune_model, fine-tune, int8 export."
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few epochs only (CI smoke test)"
    )
    parser.add_argument(
        "--out",
        default="out_cnn_digits",
        help="directory for artifacts (default: ./out_cnn_digits)",
    )
    parser.add_argument(
        "--keep-flops",
        type=float,
        default=0.1,
        help="fraction of the FLOPs to keep (default: 0.1)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    settings = dict(SETTINGS["quick" if args.quick else "full"])
    start = time.perf_counter()

    def progress(message):
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", flush=True)

    import keras

    import keras_guided

    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    x_train, y_train, x_test, y_test = load_data(args.seed)
    progress(f"digits: {len(x_train)} training, {len(x_test)} test images")

    # 1. Train to be cut, on a budget: the live network follows a path to
    # the budget over two thirds of the epochs, lands on it, and the last
    # third recovers with the dead filters kept at zero.
    model = build_cnn()
    compile_model(model, LEARNING_RATE)
    epochs = settings["epochs"]
    budget = {"flops": args.keep_flops}
    pruning = keras_guided.GuidedPruning(target=budget)

    class Progress(keras.callbacks.Callback):
        # GuidedPruning writes live_units/<layer> into `logs`.
        def on_epoch_end(self, epoch, logs=None):
            live = ", ".join(
                f"{name} {int(logs[f'live_units/{name}'])}"
                for name in ("conv1", "conv2", "dense")
            )
            progress(
                f"epoch {epoch + 1:2d}/{epochs}: loss "
                f"{logs['loss']:.3f}, accuracy {logs['accuracy']:.3f}, "
                f"live units: {live}"
            )

    progress(
        f"training {model.name} ({model.count_params():,} params), "
        f"GuidedPruning(target={budget})"
    )
    model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        verbose=0,
        callbacks=[pruning, Progress()],
    )
    model.save(os.path.join(args.out, "trained.keras"))
    accuracy_trained = accuracy(model, x_test, y_test)

    # 2. Cut. The report lists what changed per layer and the largest
    # difference between the pruned and the trained model on test images.
    pruned, report = keras_guided.prune_model(
        model, sample_inputs=x_test[:128], return_report=True
    )
    accuracy_pruned = accuracy(pruned, x_test, y_test)
    print()
    print(report.summary())
    print()
    progress(
        f"test accuracy: trained {accuracy_trained:.2%}, right after "
        f"pruning {accuracy_pruned:.2%}"
    )

    # 3. Fine-tune the smaller model by distillation from the trained one
    # (the teacher is not changed; `pruned` is trained in place and stays a
    # plain Keras model).
    distiller = keras_guided.Distiller(pruned, model, from_logits=False)
    compile_model(distiller, LEARNING_RATE / 3)
    distiller.fit(
        x_train,
        y_train,
        epochs=settings["finetune_epochs"],
        batch_size=BATCH_SIZE,
        verbose=0,
    )
    accuracy_finetuned = accuracy(pruned, x_test, y_test)
    pruned.save(os.path.join(args.out, "pruned.keras"))
    progress(
        f"fine-tuned {settings['finetune_epochs']} epoch(s): test "
        f"accuracy {accuracy_finetuned:.2%}"
    )

    # 4. Export. float32 is verified against Keras to ~1e-5; int8 is
    # calibrated on a few hundred training images (representative_data)
    # and its error against Keras is measured on the test images.
    float_report = keras_guided.export_tflite(
        pruned,
        os.path.join(args.out, "pruned_float32.tflite"),
        sample_inputs=x_test[:64],
    )
    print(float_report.summary())
    int8_path = os.path.join(args.out, "pruned_int8.tflite")
    int8_report = keras_guided.export_tflite(
        pruned,
        int8_path,
        quantization="int8",
        representative_data=x_train[:256],
        sample_inputs=x_test,
    )
    print(int8_report.summary())
    accuracy_int8 = tflite_accuracy(int8_path, x_test, y_test)

    params_before = keras_guided.stats.count_params(model)
    params_after = keras_guided.stats.count_params(pruned)
    flops_before = keras_guided.stats.count_flops(model)
    flops_after = keras_guided.stats.count_flops(pruned)
    print()
    print(
        f"params: {params_before:,} -> {params_after:,}; FLOPs per image: "
        f"{flops_before:,} -> {flops_after:,}"
    )
    print(
        f".tflite: float32 {float_report.bytes:,} bytes, int8 "
        f"{int8_report.bytes:,} bytes"
    )
    print(
        f"test accuracy: trained {accuracy_trained:.2%}, pruned "
        f"{accuracy_pruned:.2%}, fine-tuned {accuracy_finetuned:.2%}, "
        f"int8 .tflite {accuracy_int8:.2%}"
    )
    progress(f"done; artifacts in {os.path.abspath(args.out)}")
    return {
        "params_before": params_before,
        "params_after": params_after,
        "accuracy_int8": accuracy_int8,
    }


if __name__ == "__main__":
    main()
