"""Errors raised by the dataset code: each names the dataset, and where it applies the
episode and the field, so that a bad file is found without reading a traceback."""

from __future__ import annotations

__all__ = [
    "DatasetError",
    "DatasetExistsError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "RecipeError",
    "UnsupportedSpaceError",
]


class DatasetError(Exception):
    """Base class of the errors below (the CLI prints these without a traceback)."""


class DatasetNotFoundError(DatasetError, LookupError):
    """No dataset with this id under the local datasets root."""

    def __init__(self, dataset_id: str, root: str, hint: str = "") -> None:
        self.dataset_id = dataset_id
        self.root = root
        message = (
            f"dataset {dataset_id!r} not found under the local datasets root {root} "
            "(set MINARI_DATASETS_PATH to use another root)"
        )
        super().__init__(message + (f". {hint}" if hint else ""))


class DatasetExistsError(DatasetError, FileExistsError):
    """Building a dataset whose id is already taken, without ``overwrite``."""

    def __init__(self, dataset_id: str, path: str) -> None:
        self.dataset_id = dataset_id
        self.path = path
        super().__init__(
            f"dataset {dataset_id!r} already exists at {path}; pass overwrite=True to replace it"
        )


class DatasetFormatError(DatasetError, ValueError):
    """The stored data is unreadable or violates the format (names what and where)."""

    def __init__(
        self,
        dataset_id: str,
        problem: str,
        *,
        episode: int | None = None,
        field: str | None = None,
    ) -> None:
        self.dataset_id = dataset_id
        self.episode = episode
        self.field = field
        self.problem = problem
        where = f"dataset {dataset_id!r}"
        if episode is not None:
            where += f", episode {episode}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")


class UnsupportedSpaceError(DatasetError, TypeError):
    """A gymnasium space the d3rlpy conversion does not handle."""


class RecipeError(DatasetError, ValueError):
    """A missing or malformed dataset recipe."""
