"""The error types the library raises for bad input; the CLI prints these as one line.

Anything else that escapes a command is a bug and keeps its traceback.
"""

from __future__ import annotations


class HfForgettingError(Exception):
    """Base class of the errors that describe bad input, a bad file or an unusable setting."""


class ForgettingMatrixError(HfForgettingError, ValueError):
    """A forgetting matrix, or a file holding one, is malformed; the message names the file and the problem."""


class HubRepoError(HfForgettingError, ValueError):
    """A Hub repo, or a file in it, is malformed, unsafe or too large, or a push to it failed; the
    message names the repo (and commit and file where there is one)."""


class PredictorFormatError(HfForgettingError, ValueError):
    """A saved predictor is malformed or of another kind; the message names the file and the problem."""


class RepoKindError(HfForgettingError, ValueError):
    """A folder or Hub repo holds another kind of artifact than the one asked for (a matrix vs a predictor)."""


class CollectionJobError(HfForgettingError, RuntimeError):
    """A collection job started side by side with others exited with an error; its own output says why."""


class UnknownExampleError(HfForgettingError, KeyError):
    """Example or task ids that the matrix or predictor does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; these are sentences
        return str(self.args[0]) if self.args else ""
