"""The benchmark harness behind ``elmur train | eval | bench | demo``.

- :mod:`.configs`: YAML run configs -> d3rlpy configs (through d3rlpy's registry decoder)
- :mod:`.train`: build the dataset if needed, fit, save ``model.d3`` + resolved config + logs
- :mod:`.run_folder`: a run's folder: files, identity, lock, cached result, fingerprint
- :mod:`.loggers`: a run's CSV logs and the tracking adapters
- :mod:`.envs`: the evaluation vector envs (built in one function)
- :mod:`.tmaze`, :mod:`.popgym`: evaluation per T-Maze length / POPGym task
- :mod:`.evaluate`: a saved model on any env id (``elmur eval``)
- :mod:`.positions`: error by position in a segment, replaying dataset episodes
- :mod:`.suite_config`: a suite file (algorithms x seeds x tasks), read and checked
- :mod:`.suite`: running a suite -> ``results.json``
- :mod:`.report`: ``results.json`` -> ``results.md`` and plots (pure, regenerable)
"""

from . import (
    configs,
    envs,
    evaluate,
    popgym,
    positions,
    report,
    run_folder,
    runinfo,
    suite,
    suite_config,
    tmaze,
    train,
)
from .configs import *
from .envs import *
from .evaluate import *
from .popgym import *
from .positions import *
from .report import *
from .run_folder import *
from .runinfo import *
from .suite import *
from .suite_config import *
from .tmaze import *
from .train import *

__all__ = [
    *configs.__all__,
    *envs.__all__,
    *evaluate.__all__,
    *popgym.__all__,
    *positions.__all__,
    *report.__all__,
    *run_folder.__all__,
    *runinfo.__all__,
    *suite.__all__,
    *suite_config.__all__,
    *tmaze.__all__,
    *train.__all__,
]
