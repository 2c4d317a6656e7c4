"""``python -m reluflow`` is the ``reluflow`` command."""

import sys

from reluflow.pipeline.cli import main

sys.exit(main())
