"""T-Maze with image observations, to exercise pixel encoders on the same memory task.

Each frame is a uint8 picture of the vector observation ``[y, hint, flag, noise]`` of
:class:`~d3rlpy_elmur.envs.tmaze.TMazeEnv` (S = ``frame_size``)::

    rows [0, S/4)      cue band: green if hint = +1, red if hint = -1, black otherwise
    rows [S/4, 3S/4)   scene: grey corridor bar; at the junction a white wall on the
                       right; the agent is a blue square (raised / lowered in a goal cell)
    rows [3S/4, S)     noise band: grey level 0 / 127 / 254 for noise -1 / 0 / +1

so the cue colour is visible at t = 0 only, exactly as the hint in the vector task.
:func:`decode_tmaze_frame` inverts the drawing (used by the expert and the tests).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .tmaze import TMazeEnv, TMazeVariant

__all__ = ["VisualTMazeEnv", "decode_tmaze_frame", "render_tmaze_frame"]

_GREEN = (0, 255, 0)
_RED = (255, 0, 0)
_GREY = (128, 128, 128)
_WHITE = (255, 255, 255)
_BLUE = (0, 0, 255)


def render_tmaze_frame(
    y: float, hint: float, flag: float, noise: float, frame_size: int = 32
) -> np.ndarray:
    """Draw one H x W x 3 uint8 frame for a vector T-Maze observation."""
    s = frame_size
    q = s // 4
    frame = np.zeros((s, s, 3), dtype=np.uint8)
    if hint > 0:
        frame[:q] = _GREEN
    elif hint < 0:
        frame[:q] = _RED
    mid = s // 2
    frame[mid - 1 : mid + 1, :] = _GREY
    if flag:
        frame[q : 3 * q, s - 2 :] = _WHITE
    # agent square: centred for y = 0, top / bottom of the scene band in a goal cell
    top = {1: q, 0: mid - 2, -1: 3 * q - 4}[int(y)]
    frame[top : top + 4, mid - 2 : mid + 2] = _BLUE
    frame[3 * q :] = round((noise + 1) * 127)
    return frame


def decode_tmaze_frame(frame: np.ndarray) -> np.ndarray:
    """Recover ``[y, hint, flag, noise]`` (float32) from a frame (HWC or CHW)."""
    img = np.asarray(frame)
    if img.ndim != 3:
        raise ValueError(f"expected a 3-D frame, got shape {img.shape}")
    if img.shape[0] == 3 and img.shape[-1] != 3:
        img = np.moveaxis(img, 0, -1)
    s = img.shape[0]
    q = s // 4
    mid = s // 2
    cue = img[0, 0]
    hint = 1.0 if cue[1] == 255 else (-1.0 if cue[0] == 255 else 0.0)
    flag = 1.0 if img[mid - 4, s - 1, 0] == 255 else 0.0
    column = img[q : 3 * q, mid, 2]
    rows = np.flatnonzero(column == 255) + q
    top = int(rows[0])
    y = 1.0 if top == q else (-1.0 if top == 3 * q - 4 else 0.0)
    noise = round(float(img[3 * q, 0, 0]) / 127.0) - 1.0
    return np.array((y, hint, flag, noise), dtype=np.float32)


class VisualTMazeEnv(TMazeEnv):
    """The T-Maze of :class:`TMazeEnv` observed through small uint8 frames.

    Args:
        corridor_length: corridor length L.
        variant: ``"passive"`` (default) or ``"active"``.
        penalty: see :class:`TMazeEnv`.
        goal_reward: see :class:`TMazeEnv`.
        noise: draw the noise band.
        frame_size: S, a multiple of 4 and at least 16 (Minari treats frames of 32 and
            more as images).
        channels_first: return 3 x S x S (d3rlpy's pixel encoders) instead of S x S x 3.
    """

    def __init__(
        self,
        corridor_length: int = 10,
        variant: TMazeVariant = "passive",
        penalty: float = 0.0,
        goal_reward: float = 1.0,
        noise: bool = True,
        frame_size: int = 32,
        channels_first: bool = True,
    ) -> None:
        if frame_size < 16 or frame_size % 4:
            raise ValueError(f"frame_size must be a multiple of 4 >= 16, got {frame_size}")
        self.frame_size = int(frame_size)
        self.channels_first = bool(channels_first)
        super().__init__(
            corridor_length=corridor_length,
            variant=variant,
            penalty=penalty,
            goal_reward=goal_reward,
            noise=noise,
        )
        # Every frame is one of 18 backgrounds plus a noise band: draw them once.
        self._frames: dict[tuple[int, int, int], np.ndarray] = {}
        for y in (-1, 0, 1):
            for hint in (-1, 0, 1):
                for flag in (0, 1):
                    img = render_tmaze_frame(y, hint, flag, 0.0, self.frame_size)
                    if self.channels_first:
                        img = np.ascontiguousarray(np.moveaxis(img, -1, 0))
                    self._frames[(y, hint, flag)] = img

    def _make_observation_space(self) -> gym.Space[Any]:
        s = self.frame_size
        shape = (3, s, s) if self.channels_first else (s, s, 3)
        return gym.spaces.Box(0, 255, shape=shape, dtype=np.uint8)

    def _observe(self) -> Any:
        y, hint, flag = self._features()
        noise = self._next_noise()
        frame = self._frames[(int(y), int(hint), int(flag))].copy()
        band = 3 * self.frame_size // 4
        level = round((noise + 1) * 127)
        if self.channels_first:
            frame[:, band:] = level
        else:
            frame[band:] = level
        return frame
