"""Timing events from the engine, for listeners such as the profiler.

The engine calls `emit("setup", seconds)` after its host work before compiling
(checking the input, building the Problem, laying out and transferring the
data), `emit("compile", seconds)` after compiling a program and
`emit("epochs", n_epochs, seconds)` after running it (blocking, compile time
excluded). Profiling subscribes with `add_listener`; training never imports
profiling, so the dependency points one way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Listener = Callable[..., Any]

_LOCK = threading.Lock()
_LISTENERS: list[Listener] = []


def add_listener(fn: Listener) -> Listener:
    """Registers `fn(kind, *values)`; returns `fn` (usable as a decorator). Idempotent."""
    if not callable(fn):
        raise TypeError(f"listener must be callable, got {fn!r}")
    with _LOCK:
        if fn not in _LISTENERS:
            _LISTENERS.append(fn)
    return fn


def remove_listener(fn: Listener) -> None:
    """Unregisters `fn`; removing a listener that is not registered is a no-op."""
    with _LOCK:
        if fn in _LISTENERS:
            _LISTENERS.remove(fn)


def listeners() -> tuple[Listener, ...]:
    """The registered listeners, in registration order."""
    with _LOCK:
        return tuple(_LISTENERS)


def emit(kind: str, *values: Any) -> None:
    """Sends `(kind, *values)` to every listener: ("setup", s), ("compile", s) or ("epochs", n, s)."""
    for fn in listeners():
        fn(kind, *values)
