"""Record the truncation picture along any training run: the practitioner's path to
:mod:`reluflow.training.monitor`.

``from reluflow import monitor`` then ``with monitor.watch(model, X, labels) as mon: … mon.step()`` and
``mon.result()``: the same objects as in :mod:`reluflow.training.monitor`, where they are defined, documented and
tested (notebooks 10 and 12 show them).
"""

from reluflow.training.monitor import *  # noqa: F401,F403
from reluflow.training.monitor import __all__  # noqa: F401
