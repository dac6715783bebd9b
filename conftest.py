"""Root conftest: applies to doctests in keras_guided/ as well as tests/."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
