"""Experts for all 16 POPGym families (``pip install d3rlpy-elmur[popgym]``).

The paper's POPGym data came from PPO-GRU agents we cannot reach, so our datasets are
demonstrations by experts, one per family, each bound to one environment. An expert is
*privileged* (reads the hidden state through ``env.unwrapped``) where the history a model
sees determines that state, so it can learn the expert's choices: the answer of the
diagnostic tasks, the physical state of the control tasks. It is *observation-only* (acts
on its observations and its own past actions, reading the environment only for the task's
constants) where a privileged expert would make the data degenerate: it would pull the
best arm without exploring, click only safe squares, fire only at ships, flip only pairs,
walk straight to an exit it cannot see. Modules: :mod:`.cards`, :mod:`.control`,
:mod:`.games`, :mod:`.labyrinth`; each class docstring says how close to optimal it is.

Mean return (best possible 1.0 everywhere) over seeds 0..19 (the tests) and over each
recipe's dataset (1000 episodes, MineSweeper 3000; ``elmur dataset build``), for Easy /
Medium / Hard:

========================== ====== ===================== ===================== ===========
family                     kind   seeds 0..19           dataset               optimal
========================== ====== ===================== ===================== ===========
RepeatPrevious             priv.  1.000 / 1.000 / 1.000 1.000 / 1.000 / 1.000 yes
RepeatFirst                priv.  1.000 / 1.000 / 1.000 1.000 / 1.000 / 1.000 yes
Autoencode                 priv.  1.000 / 1.000 / 1.000 1.000 / 1.000 / 1.000 yes
CountRecall                priv.  1.000 / 1.000 / 1.000 1.000 / 1.000 / 1.000 yes
HigherLower                obs.   0.564 / 0.518 / 0.514 0.528 / 0.520 / 0.510 yes [1]
Concentration              obs.   0.829 / 0.821 / 0.707 0.814 / 0.813 / 0.697 near [2]
MineSweeper                obs.   0.932 / 0.500 / 0.608 0.744 / 0.449 / 0.480 no [3]
Battleship                 obs.   0.503 / 0.565 / 0.604 0.529 / 0.584 / 0.613 no [4]
MultiarmedBandit           obs.   0.729 / 0.812 / 0.839 0.723 / 0.795 / 0.819 no [5]
LabyrinthEscape            obs.   0.962 / 0.912 / 0.866 0.961 / 0.920 / 0.863 no [6]
LabyrinthExplore           obs.   0.969 / 0.926 / 0.871 0.970 / 0.926 / 0.866 near [6]
PositionOnlyCartPole       priv.  1.000 / 1.000 / 1.000 1.000 / 1.000 / 1.000 yes
VelocityOnlyCartpole       priv.  1.000 / 1.000 / 1.000 1.000 / 1.000 / 1.000 yes
NoisyPositionOnlyCartPole  priv.  1.000 / 1.000 / 1.000 1.000 / 1.000 / 1.000 yes
PositionOnlyPendulum       priv.  0.916 / 0.888 / 0.831 0.910 / 0.880 / 0.820 near [7]
NoisyPositionOnlyPendulum  priv.  0.916 / 0.916 / 0.916 0.910 / 0.910 / 0.910 near [7]
========================== ====== ===================== ===================== ===========

[1] Bayes-optimal from the observations (a guess changes nothing that follows); 1.0 would
need the next card. [2] Perfect memory, optimal but for rare end-game choices. [3] A guess
can hit a mine, the first click included (11-15% of episodes end there). [4] The task
never says a ship sank. [5] An oracle pulling the best arm averages about 0.82 / 0.90 /
0.94. [6] Plans on the cells seen so far; Escape cannot know where the exit is. [7] The
swing-up from hanging costs about 0.22 of 200 steps, more of Medium's 150 and Hard's 100
(the noisy variants keep 200 steps); the noise is in the observation, not the state.

:data:`EXPERT_RETURN_BOUNDS` holds the lower bounds the tests enforce (on seeds 0..19, and
on every recipe's ``expected_return``). popgym itself is imported lazily, only by
:func:`make_popgym_env`; the Labyrinth tasks also need ``mazelib``.
"""

from __future__ import annotations

from ..experts import register_expert
from . import base, cards, control, games, labyrinth
from .base import *
from .cards import *
from .control import *
from .games import *
from .labyrinth import *

__all__ = [
    *base.__all__,
    *cards.__all__,
    *control.__all__,
    *games.__all__,
    *labyrinth.__all__,
    "EXPERT_RETURN_BOUNDS",
    "POPGYM_EXPERT_NAMES",
    "describe_popgym_expert",
    "expert_name_for_popgym",
]

# Lower bounds on the mean return over seeds 0..19, a little under both means above:
# tests/envs enforces them, tests/test_cli_dataset that every recipe's expected_return
# meets them.
EXPERT_RETURN_BOUNDS: dict[str, float] = {
    "popgym-RepeatPreviousEasy-v0": 0.999,
    "popgym-RepeatPreviousMedium-v0": 0.999,
    "popgym-RepeatPreviousHard-v0": 0.999,
    "popgym-RepeatFirstEasy-v0": 0.999,
    "popgym-RepeatFirstMedium-v0": 0.999,
    "popgym-RepeatFirstHard-v0": 0.999,
    "popgym-AutoencodeEasy-v0": 0.999,
    "popgym-AutoencodeMedium-v0": 0.999,
    "popgym-AutoencodeHard-v0": 0.999,
    "popgym-CountRecallEasy-v0": 0.999,
    "popgym-CountRecallMedium-v0": 0.999,
    "popgym-CountRecallHard-v0": 0.999,
    "popgym-HigherLowerEasy-v0": 0.51,
    "popgym-HigherLowerMedium-v0": 0.5,
    "popgym-HigherLowerHard-v0": 0.49,
    "popgym-ConcentrationEasy-v0": 0.8,
    "popgym-ConcentrationMedium-v0": 0.8,
    "popgym-ConcentrationHard-v0": 0.68,
    "popgym-MineSweeperEasy-v0": 0.72,
    "popgym-MineSweeperMedium-v0": 0.43,
    "popgym-MineSweeperHard-v0": 0.46,
    "popgym-BattleshipEasy-v0": 0.48,
    "popgym-BattleshipMedium-v0": 0.55,
    "popgym-BattleshipHard-v0": 0.59,
    "popgym-MultiarmedBanditEasy-v0": 0.7,
    "popgym-MultiarmedBanditMedium-v0": 0.78,
    "popgym-MultiarmedBanditHard-v0": 0.8,
    "popgym-LabyrinthEscapeEasy-v0": 0.95,
    "popgym-LabyrinthEscapeMedium-v0": 0.9,
    "popgym-LabyrinthEscapeHard-v0": 0.85,
    "popgym-LabyrinthExploreEasy-v0": 0.96,
    "popgym-LabyrinthExploreMedium-v0": 0.91,
    "popgym-LabyrinthExploreHard-v0": 0.85,
    "popgym-PositionOnlyCartPoleEasy-v0": 0.999,
    "popgym-PositionOnlyCartPoleMedium-v0": 0.999,
    "popgym-PositionOnlyCartPoleHard-v0": 0.999,
    "popgym-VelocityOnlyCartpoleEasy-v0": 0.999,
    "popgym-VelocityOnlyCartpoleMedium-v0": 0.999,
    "popgym-VelocityOnlyCartpoleHard-v0": 0.999,
    "popgym-NoisyPositionOnlyCartPoleEasy-v0": 0.999,
    "popgym-NoisyPositionOnlyCartPoleMedium-v0": 0.999,
    "popgym-NoisyPositionOnlyCartPoleHard-v0": 0.999,
    "popgym-PositionOnlyPendulumEasy-v0": 0.9,
    "popgym-PositionOnlyPendulumMedium-v0": 0.87,
    "popgym-PositionOnlyPendulumHard-v0": 0.81,
    "popgym-NoisyPositionOnlyPendulumEasy-v0": 0.9,
    "popgym-NoisyPositionOnlyPendulumMedium-v0": 0.9,
    "popgym-NoisyPositionOnlyPendulumHard-v0": 0.9,
}

# Expert per POPGym family (as its ids spell it); every difficulty shares one expert.
_EXPERTS: dict[str, tuple[str, type[PopGymExpert]]] = {
    "RepeatPrevious": ("popgym-repeat-previous", RepeatPreviousExpert),
    "RepeatFirst": ("popgym-repeat-first", RepeatFirstExpert),
    "Autoencode": ("popgym-autoencode", AutoencodeExpert),
    "CountRecall": ("popgym-count-recall", CountRecallExpert),
    "HigherLower": ("popgym-higher-lower", HigherLowerExpert),
    "Concentration": ("popgym-concentration", ConcentrationExpert),
    "MineSweeper": ("popgym-minesweeper", MineSweeperExpert),
    "Battleship": ("popgym-battleship", BattleshipExpert),
    "MultiarmedBandit": ("popgym-multiarmed-bandit", MultiarmedBanditExpert),
    "LabyrinthEscape": ("popgym-labyrinth-escape", LabyrinthEscapeExpert),
    "LabyrinthExplore": ("popgym-labyrinth-explore", LabyrinthExploreExpert),
    "PositionOnlyCartPole": ("popgym-position-only-cartpole", CartPoleExpert),
    "VelocityOnlyCartpole": ("popgym-velocity-only-cartpole", CartPoleExpert),
    "NoisyPositionOnlyCartPole": ("popgym-noisy-position-only-cartpole", CartPoleExpert),
    "PositionOnlyPendulum": ("popgym-position-only-pendulum", PendulumExpert),
    "NoisyPositionOnlyPendulum": ("popgym-noisy-position-only-pendulum", PendulumExpert),
}

POPGYM_EXPERT_NAMES: dict[str, str] = {family: name for family, (name, _) in _EXPERTS.items()}


def expert_name_for_popgym(env_id: str) -> str:
    """Expert name for a ``popgym-<Family><Easy|Medium|Hard>-v0`` id."""
    name = env_id.removeprefix("popgym-").rsplit("-v", 1)[0]
    for difficulty in ("Easy", "Medium", "Hard"):
        if name.endswith(difficulty):
            family = name.removesuffix(difficulty)
            if family in POPGYM_EXPERT_NAMES:
                return POPGYM_EXPERT_NAMES[family]
    known = ", ".join(sorted(POPGYM_EXPERT_NAMES))
    raise LookupError(
        f"no expert for {env_id!r}; supported families: {known} "
        "(ids look like popgym-RepeatPreviousEasy-v0)"
    )


def describe_popgym_expert(name: str) -> str:
    """``"privileged expert NAME (reads the hidden state)"`` or the observation-only one."""
    for expert_name, cls in _EXPERTS.values():
        if expert_name == name:
            if cls.privileged:
                return f"privileged expert {name} (reads the hidden state)"
            return f"observation-only expert {name} (acts on the observation history)"
    raise LookupError(f"no POPGym expert called {name!r}")


def _register() -> None:
    for name, cls in _EXPERTS.values():
        register_expert(name, cls)


_register()
