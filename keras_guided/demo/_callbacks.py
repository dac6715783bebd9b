"""The demo's progress lines and its two callbacks: the live units per
epoch, and the best fine-tune epoch kept."""

import time

from keras_guided.demo import _measures


class Progress:
    """Prints a progress line with the seconds since the start (when
    `verbose`)."""

    def __init__(self, verbose):
        self.verbose = verbose
        self.start = time.perf_counter()

    def __call__(self, message):
        if self.verbose:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:5.1f}s] {message}", flush=True)


def live_units_logger(progress):
    """A callback writing each epoch's loss, accuracy and live units."""
    import keras

    class LiveUnits(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            progress(
                f"  epoch {epoch + 1}: loss {logs.get('loss', 0):.3f}, "
                f"accuracy {logs.get('accuracy', 0):.3f}, live units "
                f"{int(logs.get('live_units', 0))}"
            )

    return LiveUnits()


def best_epoch_keeper(model, x_val, y_val, progress):
    """A callback keeping `model`'s weights of the epoch with the best
    validation accuracy, the state before the first epoch included (epoch
    0; ties keep the earlier), and restoring them when `fit` ends."""
    import keras

    class BestEpoch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.history = [_measures.accuracy(model, x_val, y_val)]
            self.best_epoch = 0
            self.best_weights = model.get_weights()

        def on_epoch_end(self, epoch, logs=None):
            accuracy = _measures.accuracy(model, x_val, y_val)
            self.history.append(accuracy)
            progress(
                f"  fine-tune epoch {epoch + 1}: validation accuracy "
                f"{accuracy:.2%}"
            )
            if accuracy > self.history[self.best_epoch]:
                self.best_epoch = epoch + 1
                self.best_weights = model.get_weights()

        def on_train_end(self, logs=None):
            model.set_weights(self.best_weights)

    return BestEpoch()
