"""``ELMUR``, the sequence encoder: the model of ``elmur.py`` with its step path
(``elmur_step.py``) and export path (``elmur_export.py``).

Both paths build on the model's layer and segment-path helpers (``ELMURBase``), so the class
that offers all three paths stands above the three files: the model never imports its paths.
"""

from __future__ import annotations

from typing import Any

import torch

from . import elmur_export
from .elmur import ELMURBase, ELMURConfig
from .elmur_step import ELMURStepper
from .sequence import State

__all__ = ["ELMUR"]


class ELMUR(ELMURBase):
    """The ELMUR sequence model. State: ``memory`` [B, Lm, M, D], ``anchors`` [B, Lm, M]."""

    def __init__(self, cfg: ELMURConfig):
        super().__init__(cfg)
        self._stepper: ELMURStepper | None = None  # the step path, made by initial_step_state

    def initial_step_state(self, batch_size: int) -> State:
        """State plus the step path's caches (``elmur_step.py``); the step path's tables are
        taken from the parameters now."""
        return self._step_path().initial_state(batch_size)

    def step(
        self, token: torch.Tensor, steps: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        """One token per row: token [B, D] at absolute steps [B] -> features [B, D].

        The tensors of ``state`` (from ``initial_step_state``) are updated in place and the
        same dict is returned: for inference under ``torch.no_grad`` / ``inference_mode``.
        """
        if self._stepper is None:
            raise RuntimeError("ELMUR.step needs a state from initial_step_state()")
        return self.ln_out(self._stepper.step(token, steps, state)), state

    def compile_step(self, enable: bool = True, **options: Any) -> None:
        """Runs the token path of ``step`` through ``torch.compile`` (``options`` go to it).

        Optional: it compiles once per batch size (tens of seconds on CPU) and then fuses the
        per-step kernels; the segment-end memory write stays eager. Measure before using it
        (benchmarks/inference.py --compile).
        """
        self._step_path().compile(enable, **options)

    def _step_path(self) -> ELMURStepper:
        if self._stepper is None:
            self._stepper = ELMURStepper(self)
        return self._stepper

    # the export path's functions take the model first: they are its methods as they stand
    initial_export_state = elmur_export.initial_export_state
    export_step = elmur_export.export_step
    export_write = elmur_export.export_write
