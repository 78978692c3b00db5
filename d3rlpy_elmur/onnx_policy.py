"""Runs an exported ELMURDT policy (``save_policy("x.onnx")``) with onnxruntime and numpy alone.

This module imports neither torch nor d3rlpy: a robot or a server can act with
``pip install --no-deps d3rlpy-elmur`` plus ``numpy`` and ``onnxruntime``. The graph's inputs
and outputs are described in ``d3rlpy_elmur.export``; this class keeps the state between calls.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ONNXPolicy", "load_onnx_policy"]

_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


class ONNXPolicy:
    """``predict(observation, reward)`` for one episode, ``predict_batch`` for many at once.

    ``reset(n)`` starts ``n`` new episodes; ``predict_batch(..., first=mask)`` restarts the rows
    in ``mask`` (an episode that ended) without touching the others. ``reward`` is the reward
    of the previous step (0 on an episode's first step), as with d3rlpy's stateful wrapper;
    the return-to-go is ``target_return`` minus the rewards so far.
    """

    def __init__(self, session: Any, target_return: float = 0.0):
        self._session = session
        inputs = session.get_inputs()
        self._observation_names = [i.name for i in inputs if i.name.startswith("observation_")]
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
        self._return_to_go = np.full((n, 1), self.target_return, dtype=np.float32)

    def predict(self, observation: np.ndarray | Sequence[np.ndarray], reward: float) -> Any:
        """The action for one episode's observation (run ``reset()`` first for a new one)."""
        if self._n != 1:
            raise ValueError(f"{self._n} episodes are running: use predict_batch, or reset()")
        batched = [np.asarray(part)[None] for part in self._parts(observation)]
        actions, _ = self._run(batched, np.array([reward], dtype=np.float32), None)
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
        return self._run(self._parts(observations), rewards, first)

    def _run(
        self, parts: list[Any], rewards: np.ndarray, first: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if first is not None:
            self._first = self._first | np.asarray(first, dtype=np.bool_)
        rewards = np.asarray(rewards, dtype=np.float32).reshape(self._n, 1)
        start = np.where(self._first[:, None], self.target_return, self._return_to_go)
        self._return_to_go = (start - rewards).astype(np.float32)
        feed: dict[str, np.ndarray] = {
            name: np.asarray(part, dtype=np.float32)
            for name, part in zip(self._observation_names, parts, strict=True)
        }
        if self._takes_return:
            feed["return_to_go"] = self._return_to_go
        feed["first"] = self._first
        feed.update(self._state)
        action, output, *state = self._session.run(self._output_names, feed)
        nexts = dict(zip(self._output_names[2:], state, strict=True))
        self._state = {name: nexts["next." + name[len("state.") :]] for name in self._state}
        self._first = np.zeros(self._n, dtype=np.bool_)
        return action, output

    def _parts(self, observation: Any) -> list[Any]:
        """The observation's parts: itself for a one-part policy (a list of numbers is one
        observation then), else its items, one per part."""
        if len(self._observation_names) == 1:
            return [observation]
        if not isinstance(observation, (list, tuple)) or len(observation) != len(
            self._observation_names
        ):
            raise ValueError(
                f"the policy takes a tuple observation of {len(self._observation_names)} parts"
            )
        return list(observation)


def load_onnx_policy(
    path: str | os.PathLike[str], target_return: float = 0.0, threads: int = 1
) -> ONNXPolicy:
    """An :class:`ONNXPolicy` over ``path`` on the CPU with ``threads`` intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("load_onnx_policy needs onnxruntime: pip install onnxruntime") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return ONNXPolicy(session, target_return)
