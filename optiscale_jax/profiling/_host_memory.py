"""Host (CPU RAM) memory of this process: current resident set and its peak.

On Linux the kernel keeps the resident-set high-water mark ``VmHWM`` in
``/proc/self/status`` and resets it to the current ``VmRSS`` when ``5`` is
written to ``/proc/self/clear_refs``; that gives a peak per phase. Where the
reset is refused (some sandboxes) the peak is the process lifetime peak, and
where ``/proc`` is missing (macOS) the fallback is ``getrusage``'s
``ru_maxrss``, also a lifetime peak. Every reading says which source it used.

All sizes are in bytes.
"""

from __future__ import annotations

import resource
import sys
from typing import NamedTuple

_PROC_STATUS = "/proc/self/status"
_PROC_CLEAR_REFS = "/proc/self/clear_refs"

SOURCE_VMHWM = "VmHWM"
SOURCE_RU_MAXRSS = "ru_maxrss"


class PeakReset(NamedTuple):
    """Outcome of an attempt to reset the host peak.

    Attributes:
      ok: True when the kernel reset ``VmHWM`` to the current RSS.
      reason: empty when ``ok``; otherwise why the reset failed (the peak
        then covers the whole process lifetime).
    """

    ok: bool
    reason: str


class HostPeak(NamedTuple):
    """A host peak reading.

    Attributes:
      peak_bytes: the resident-set high-water mark, bytes.
      source: ``"VmHWM"`` (reset at the phase start), ``"VmHWM (not reset: ...)"``,
        or ``"ru_maxrss (process lifetime peak ...)"``.
    """

    peak_bytes: int
    source: str


def _read_status_kib(field: str) -> int | None:
    """Value of a ``kB`` field of /proc/self/status in KiB, or None if absent."""
    try:
        with open(_PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> int | None:
    """Resident set size now (``VmRSS``), bytes; None where /proc is missing."""
    kib = _read_status_kib("VmRSS")
    return None if kib is None else kib * 1024


def _ru_maxrss_bytes() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (KiB on Linux, bytes on macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024


def reset_host_peak() -> PeakReset:
    """Reset the kernel's ``VmHWM`` to the current RSS by writing ``5`` to clear_refs."""
    try:
        with open(_PROC_CLEAR_REFS, "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError as error:  # PermissionError in sandboxes, FileNotFoundError off Linux
        return PeakReset(False, f"{type(error).__name__} writing {_PROC_CLEAR_REFS}: {error}")
    return PeakReset(True, "")


def host_peak(reset: PeakReset | None = None) -> HostPeak:
    """Read the host peak, labelled with how far back it reaches.

    Args:
      reset: the result of the ``reset_host_peak()`` call that opened the
        phase, or None when no reset was attempted.
    """
    kib = _read_status_kib("VmHWM")
    if kib is None:
        return HostPeak(_ru_maxrss_bytes(),
                        f"{SOURCE_RU_MAXRSS} (process lifetime peak; {_PROC_STATUS} has no VmHWM)")
    if reset is not None and reset.ok:
        return HostPeak(kib * 1024, SOURCE_VMHWM)
    why = reset.reason if reset is not None else "no reset requested"
    return HostPeak(kib * 1024, f"{SOURCE_VMHWM} (not reset: {why}; process lifetime peak)")
