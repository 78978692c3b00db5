"""The benchmark harness behind ``elmur train | eval | bench | demo``.

- :mod:`.configs`: YAML run configs -> d3rlpy configs (through d3rlpy's registry decoder)
- :mod:`.train`: build the dataset if needed, fit, save ``model.d3`` + resolved config + logs
- :mod:`.envs`: the evaluation vector envs (built in one function)
- :mod:`.tmaze`, :mod:`.popgym`: evaluation per T-Maze length / POPGym task
- :mod:`.evaluate`: a saved model on any env id (``elmur eval``)
- :mod:`.positions`: error by position in a segment, replaying dataset episodes
- :mod:`.suite`: a comparison (algorithms x seeds x tasks) -> ``results.json``
- :mod:`.report`: ``results.json`` -> ``results.md`` and plots (pure, regenerable)
"""

from . import (
    configs,
    envs,
    evaluate,
    popgym,
    positions,
    report,
    runinfo,
    suite,
    tmaze,
    train,
)
from .configs import *
from .envs import *
from .evaluate import *
from .popgym import *
from .positions import *
from .report import *
from .runinfo import *
from .suite import *
from .tmaze import *
from .train import *

__all__ = [
    *configs.__all__,
    *envs.__all__,
    *evaluate.__all__,
    *popgym.__all__,
    *positions.__all__,
    *report.__all__,
    *runinfo.__all__,
    *suite.__all__,
    *tmaze.__all__,
    *train.__all__,
]
