"""`python -m keras_guided ARGS`: the `keras-guided` command, the same as
`python -m keras_guided.cli ARGS`."""

import sys

from keras_guided.cli import main

if __name__ == "__main__":
    sys.exit(main())
