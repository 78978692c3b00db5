"""The benchmark harness behind ``elmur train | eval | bench | demo``; what it evaluates
with is :mod:`d3rlpy_elmur.evaluation`.

- :mod:`.configs`: YAML run configs -> d3rlpy configs (through d3rlpy's registry decoder)
- :mod:`.train`: build the dataset if needed, fit, save ``model.d3`` + resolved config + logs
- :mod:`.run_folder`: a run's folder: files, identity, lock, cached result, fingerprint
- :mod:`.loggers`: a run's CSV logs and the tracking adapters
- :mod:`.positions`: error by position in a segment, replaying dataset episodes
- :mod:`.suite_config`: a suite file (algorithms x seeds x tasks), read and checked
- :mod:`.suite`: running a suite -> ``results.json``
- :mod:`.report`: ``results.json`` -> ``results.md`` and plots (pure, regenerable)
- :mod:`.sweep`: hyperparameter sweeps (Optuna) whose best trial becomes a config
- :mod:`.backends`, :mod:`.workers`: where runs execute (local worker processes, or Ray) and
  ``drive``, the one loop that runs the suites' runs and the sweeps' trials
- :mod:`.runinfo`: the hardware, versions, commit and command line of a result
"""

from . import (
    configs,
    positions,
    report,
    run_folder,
    runinfo,
    suite,
    suite_config,
    train,
)
from .configs import *
from .positions import *
from .report import *
from .run_folder import *
from .runinfo import *
from .suite import *
from .suite_config import *
from .train import *

__all__ = [
    *configs.__all__,
    *positions.__all__,
    *report.__all__,
    *run_folder.__all__,
    *runinfo.__all__,
    *suite.__all__,
    *suite_config.__all__,
    *train.__all__,
]
