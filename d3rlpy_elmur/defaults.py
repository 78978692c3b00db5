"""What a caller gets without asking, defined once for the whole library: the wrapper,
``evaluate``, the suites, the sweeps, ``load_onnx_policy`` and the ``elmur`` command line
(whose parser passes None and lets these apply).

It imports nothing: ``load_onnx_policy`` uses it where d3rlpy and torch are absent.
"""

from __future__ import annotations

__all__ = ["DEFAULT_EVAL_SEED", "DEFAULT_TARGET_RETURN", "DEFAULT_TEST_SEED"]

DEFAULT_TARGET_RETURN = 1.0  # return-to-go at t=0 for DT-style models
DEFAULT_TEST_SEED = 1_000_000  # first episode seed of the suites and `elmur eval`
DEFAULT_EVAL_SEED = 5_000_000  # the sweeps' validation seeds, apart from the test seeds
