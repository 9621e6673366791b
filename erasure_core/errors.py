"""The engine's error types.

Every error the engine raises on purpose is an `ErasureError`; each subclass also inherits the builtin that callers
would naturally catch (`ValueError`, `MemoryError`, ...), so host code written against builtins keeps working.
Messages say what was wrong and what to do about it; hosts show them unchanged.
"""


class ErasureError(Exception):
    """Base class of every error raised on purpose by the engine."""


class ConfigError(ErasureError, ValueError):
    """A setting is missing, out of range or contradicts another one."""


class ModelError(ErasureError, ValueError):
    """The model (or a LoRA file) cannot be used: missing, unreadable, unsupported or mismatched."""


class NumericalError(ErasureError, ArithmeticError):
    """A loss or an edit became NaN or infinite."""


class ResourceError(ErasureError, MemoryError):
    """The device ran out of memory."""


class Cancelled(ErasureError):
    """The host asked the run to stop; nothing was written and the model was restored.

    `phase` names what the run was doing (a key of `cancel.PHASES`), for hosts and tests."""

    def __init__(self, message: str, phase: str = "") -> None:
        super().__init__(message)
        self.phase = phase
