"""Memory tasks: T-Maze (vector, Dict, image observations), the cue-recall family, and experts,
incl. POPGym."""

from . import experts, popgym_experts, recall, registration, tmaze, tmaze_vector, visual_tmaze
from .experts import *
from .popgym_experts import *
from .recall import *
from .registration import *
from .tmaze import *
from .tmaze_vector import *
from .visual_tmaze import *

register_envs()

__all__ = [
    *experts.__all__,
    *popgym_experts.__all__,
    *recall.__all__,
    *registration.__all__,
    *tmaze.__all__,
    *tmaze_vector.__all__,
    *visual_tmaze.__all__,
]
