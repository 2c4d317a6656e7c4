"""``python -m reluflow`` is the ``reluflow`` command."""

import sys

from .cli import main

sys.exit(main())
