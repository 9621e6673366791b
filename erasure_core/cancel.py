"""Cancel anywhere: the long loops deep in the engine ask the running job whether to stop.

A run polls its host's stop hook not only between training steps but inside every phase that can take seconds:
the vocabulary search, the sampling of latents, the erasure checks, UCE's solve and the audit. The hook is put
in place once per job (`cancellable`), so these loops need no extra argument; each calls `checkpoint(phase)` once
per unit of work (one encoded chunk of words, one UNet evaluation, one layer's solve), so a cancel is seen after at
most one such unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .errors import Cancelled

# What each phase is called in the message a cancel produces.
PHASES = {
    "search": "the vocabulary search",
    "sample": "the sampling of training latents",
    "train": "training",
    "check": "the erasure check",
    "solve": "UCE's solve",
    "audit": "the audit",
}

_stop: ContextVar[Callable[[], bool] | None] = ContextVar("erasure_stop", default=None)
_phase: ContextVar[str] = ContextVar("erasure_phase", default="")
_overrides: ContextVar[str] = ContextVar("erasure_phase_override", default="")


@contextmanager
def cancellable(should_stop: Callable[[], bool] | None) -> Iterator[None]:
    """Within this block, `checkpoint` polls `should_stop`: the host's Cancel, `/interrupt` or Interrupt (None:
    nothing to poll; Ctrl-C in the CLI needs no polling)."""
    token = _stop.set(should_stop)
    try:
        yield
    finally:
        _stop.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Name the phase for every `checkpoint` inside (the erasure check and the audit share the audit's sampling)."""
    token = _overrides.set(name)
    try:
        yield
    finally:
        _overrides.reset(token)


def current_phase() -> str:
    """The phase of the last checkpoint passed in this job ("" before the first)."""
    return _phase.get()


def checkpoint(name: str, where: str = "") -> None:
    """Raise `Cancelled` if the job's host asked to stop. `name` is a key of `PHASES` (an enclosing `phase` wins);
    `where` adds detail to the message ("at step 3 of 100")."""
    name = _overrides.get() or name
    _phase.set(name)
    should_stop = _stop.get()
    if should_stop is not None and should_stop():
        detail = f" {where}" if where else ""
        raise Cancelled(
            f"Cancelled during {PHASES.get(name, name)}{detail}; the model is unchanged and nothing was saved.",
            phase=name,
        )
