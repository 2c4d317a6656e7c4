"""Data curation by per-point scores: the practitioner's path to :mod:`reluflow.training.curation`.

``from reluflow import curation`` then ``curation.scores(...)`` and ``curation.prune(...)``: the same objects as in
:mod:`reluflow.training.curation`, where they are defined, documented and tested (notebook 11 shows them).
"""

from reluflow.training.curation import *  # noqa: F401,F403
from reluflow.training.curation import __all__  # noqa: F401
