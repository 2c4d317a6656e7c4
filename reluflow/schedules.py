"""Step sizes from the flow's rates: the practitioner's path to :mod:`reluflow.training.schedules`.

``from reluflow import schedules`` then ``schedules.stability_limit(...)``, ``schedules.flow_step(...)``: the same
objects as in :mod:`reluflow.training.schedules`, where they are defined, documented and tested (notebook 12).
"""

from reluflow.training.schedules import *  # noqa: F401,F403
from reluflow.training.schedules import __all__  # noqa: F401
