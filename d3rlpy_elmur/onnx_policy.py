"""Runs an exported ELMURDT policy (``save_policy("x.onnx")``) with onnxruntime and numpy alone.

This module imports neither torch nor d3rlpy: a robot or a server can act with the package's
wheel installed ``--no-deps`` plus ``numpy`` and ``onnxruntime`` (README, Deploying). The
graph's inputs and outputs are described in ``d3rlpy_elmur.export``; this class keeps the state
between calls and checks its inputs as the stateful wrapper does (``d3rlpy_elmur.observations``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .defaults import DEFAULT_TARGET_RETURN
from .extras import require
from .observations import check_observation, check_rewards

__all__ = ["ONNXPolicy", "load_onnx_policy"]

_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


class ONNXPolicy:
    """``predict(observation, reward)`` for one episode, ``predict_batch`` for many at once.

    ``reset(n)`` starts ``n`` new episodes; ``predict_batch(..., first=mask)`` restarts the rows
    in ``mask`` (an episode that ended) without touching the others. ``reward`` is the reward
    of the previous step (0 on an episode's first step), as with d3rlpy's stateful wrapper;
    the return-to-go is ``target_return`` minus the rewards so far.

    Inputs are checked before anything runs, as the stateful wrapper checks them: TypeError
    for an observation that is not numbers (or not the tuple of parts the policy takes),
    ValueError naming the part for a wrong shape, NaN or inf, a bad reward or a bad ``first``.
    A rejected call leaves the state as it was.
    """

    def __init__(self, session: Any, target_return: float = DEFAULT_TARGET_RETURN):
        self._session = session
        inputs = session.get_inputs()
        observations = [i for i in inputs if i.name.startswith("observation_")]
        self._observation_names = [i.name for i in observations]
        # the graph's observation shapes past the batch axis, as check_observation takes them
        shapes = [tuple(i.shape[1:]) for i in observations]
        self._shape = shapes[0] if len(shapes) == 1 else tuple(shapes)
        # state the graph reads (it may leave some unread, e.g. the previous action without
        # an action token, and then the exporter drops that input)
        self._state_inputs = [i for i in inputs if i.name.startswith("state.")]
        self._output_names = [o.name for o in session.get_outputs()]
        # the exporter drops inputs the graph does not read (return_to_go without an rtg token)
        self._takes_return = any(i.name == "return_to_go" for i in inputs)
        self.target_return = float(target_return)
        self.reset(1)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The recurrent state of every row now (a copy), by input name (``state.memory``, ...)."""
        return {name: value.copy() for name, value in self._state.items()}

    def reset(self, n: int = 1) -> None:
        """Starts ``n`` new episodes."""
        self._n = n
        # zeros: the graph replaces the state of rows marked ``first`` by the initial one
        self._state: dict[str, np.ndarray] = {
            i.name: np.zeros([n, *i.shape[1:]], dtype=_DTYPES[i.type]) for i in self._state_inputs
        }
        self._first = np.ones(n, dtype=np.bool_)
        # float64, as the wrapper keeps it: a sum of 10^6 rewards must not drift
        self._return_to_go = np.full((n, 1), self.target_return)

    def predict(self, observation: np.ndarray | Sequence[np.ndarray], reward: float) -> Any:
        """The action for one episode's observation (run ``reset()`` first for a new one)."""
        if self._n != 1:
            raise ValueError(f"{self._n} episodes are running: use predict_batch, or reset()")
        parts = self._parts(check_observation(observation, self._shape, batched=False))
        actions, _ = self._run([part[None] for part in parts], check_rewards(reward, 1), None)
        return actions[0].item() if actions.ndim == 1 else actions[0]

    def predict_batch(
        self,
        observations: np.ndarray | Sequence[np.ndarray],
        rewards: np.ndarray,
        first: np.ndarray | None = None,
    ) -> np.ndarray:
        """Actions [n] (discrete) or [n, A] for the rows' observations [n, *obs]."""
        return self.step(observations, rewards, first)[0]

    def step(
        self,
        observations: np.ndarray | Sequence[np.ndarray],
        rewards: np.ndarray,
        first: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(actions, outputs)``: ``outputs`` are the logits (discrete) or the model's action
        before the action scaler."""
        parts = self._parts(check_observation(observations, self._shape, batched=True))
        rows = sorted({part.shape[0] for part in parts})
        if rows != [self._n]:
            raise ValueError(
                f"observation has {', '.join(map(str, rows))} rows; expected {self._n}, one per "
                "episode (reset(n) starts n)"
            )
        restart = None
        if first is not None:
            restart = np.asarray(first)
            if restart.shape != (self._n,) or restart.dtype.kind not in "biu":
                raise ValueError(
                    f"first has shape {restart.shape} and dtype {restart.dtype}; expected "
                    f"({self._n},) booleans, one per episode"
                )
        return self._run(parts, check_rewards(rewards, self._n), restart)

    def _run(
        self, parts: list[np.ndarray], rewards: np.ndarray, restart: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One step on checked inputs; the state changes only once the session has run."""
        first = self._first if restart is None else self._first | restart.astype(np.bool_)
        start = np.where(first[:, None], self.target_return, self._return_to_go)
        return_to_go = start - rewards
        feed: dict[str, np.ndarray] = dict(zip(self._observation_names, parts, strict=True))
        if self._takes_return:
            feed["return_to_go"] = return_to_go.astype(np.float32)
        feed["first"] = first
        feed.update(self._state)
        action, output, *state = self._session.run(self._output_names, feed)
        nexts = dict(zip(self._output_names[2:], state, strict=True))
        self._state = {name: nexts["next." + name[len("state.") :]] for name in self._state}
        self._return_to_go = return_to_go
        self._first = np.zeros(self._n, dtype=np.bool_)
        return action, output

    @staticmethod
    def _parts(observation: np.ndarray | tuple[np.ndarray, ...]) -> list[np.ndarray]:
        """A checked observation's parts (one for a one-part policy)."""
        return list(observation) if isinstance(observation, tuple) else [observation]


def load_onnx_policy(
    path: str | os.PathLike[str], target_return: float = DEFAULT_TARGET_RETURN, threads: int = 1
) -> ONNXPolicy:
    """An :class:`ONNXPolicy` over ``path`` on the CPU with ``threads`` intra-op threads."""
    require("onnxruntime", "load_onnx_policy")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return ONNXPolicy(session, target_return)
