"""``python -m ei_keras.cli``: the same as the ``ei-keras`` command."""

import sys

from ei_keras.cli import main

sys.exit(main())
