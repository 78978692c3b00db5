"""Online evaluation, in one place, for ELMURDT and d3rlpy's algorithms alike.

- :mod:`.episodes`: :func:`evaluate` and :func:`run_episodes`, many episodes in lock step
- :mod:`.policies`: the batched policy of each algorithm family (one model call per step)
- :mod:`.envs`: the evaluation vector envs (built in one function, observations in the
  dataset loader's layout)
- :mod:`.tasks`: the benchmark's tasks (T-Maze per horizon, POPGym per task)
"""

from . import envs, episodes, policies, tasks
from .envs import *
from .episodes import *
from .policies import *
from .tasks import *

__all__ = [*envs.__all__, *episodes.__all__, *policies.__all__, *tasks.__all__]
