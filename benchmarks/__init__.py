"""Benchmarks for keras_guided: `python -m benchmarks --help`.

B1 compression at equal accuracy (LeNet-300-100, LeNet-5-style CNN with and
without BatchNormalization, several methods), B2 training overhead, B3
surgery and on-device speed on keras.applications models. See
`benchmarks/README.md`.
"""
