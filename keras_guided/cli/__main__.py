"""`python -m keras_guided.cli ARGS`: the `keras-guided` command."""

import sys

from keras_guided.cli import main

if __name__ == "__main__":
    sys.exit(main())
