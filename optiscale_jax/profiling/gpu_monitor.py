"""GPUMonitor: NVIDIA GPU readings through NVML (``pynvml``, package nvidia-ml-py).

Each sample reads memory used/total (bytes), GPU and memory-controller
utilization (percent over the driver's last sampling period), temperature
(degrees C), power (NVML reports milliwatts) and the energy counter (NVML
reports millijoules since the driver loaded). ``record()`` takes one sample;
``start()``/``stop()`` (or ``with GPUMonitor() as m:``) sample on a background
thread every ``interval_s`` seconds.

Without NVML (no driver: ``pynvml.NVMLError_LibraryNotFound``), without the
``pynvml`` module, or with a bad ``device_id``, the monitor reports
``available=False`` and the reason, and every method is a no-op: nothing
raises. A reading NVML does not support on a device (e.g. power on some
boards) is left out of that sample.

Note: JAX preallocates 75% of GPU memory by default, so NVML "used" shows
the pool, not live arrays (set ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` or use
``jax.Device.memory_stats()`` for the latter).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, NamedTuple

MIB = float(2**20)


class GPUSample(NamedTuple):
    """One NVML reading; a field is None where the device does not support it.

    Units: ``time_s`` seconds (monotonic clock), memory bytes, utilization
    percent, temperature degrees C, power watts, energy joules (driver counter).
    """

    time_s: float
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    gpu_utilization_percent: float | None
    memory_utilization_percent: float | None
    temperature_c: float | None
    power_w: float | None
    energy_j: float | None


def _values(samples: list[GPUSample], field: str) -> list[float]:
    return [getattr(s, field) for s in samples if getattr(s, field) is not None]


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def integrate_power_j(times_s: list[float], power_w: list[float]) -> float:
    """Energy in joules as the trapezoidal integral of power (W) over time (s)."""
    return math.fsum(0.5 * (power_w[i] + power_w[i + 1]) * (times_s[i + 1] - times_s[i])
                     for i in range(len(times_s) - 1))


class GPUMonitor:
    """Samples one NVIDIA GPU through NVML.

    Args:
      device_id: NVML index of the GPU.
      interval_s: sampling period of the background thread, seconds.

    Attributes:
      available: True when NVML answered for ``device_id``.
      reason: why not, when ``available`` is False ("" otherwise).
      name: the GPU's name ("" when unavailable).
    """

    def __init__(self, device_id: int = 0, interval_s: float = 0.1):
        if not (isinstance(interval_s, (int, float)) and interval_s > 0):
            raise ValueError(f"interval_s={interval_s!r}: the sampling period must be > 0 seconds")
        self.device_id = device_id
        self.interval_s = float(interval_s)
        self.available = False
        self.reason = ""
        self.name = ""
        self._nvml: Any = None
        self._handle: Any = None
        self._samples: list[GPUSample] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._open()

    # ------------------------------------------------------------------ NVML
    def _open(self) -> None:
        try:
            import pynvml  # noqa: PLC0415  (optional at run time; nvidia-ml-py)
        except ImportError as error:
            self.reason = (f"pynvml is not importable ({error}); install nvidia-ml-py "
                           "(pip install -r requirements-cuda.txt)")
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound as error:
            self.reason = (f"NVML library not found (pynvml.NVMLError_LibraryNotFound: {error}): "
                           "libnvidia-ml.so, shipped with the NVIDIA driver, is missing, "
                           "so there is no NVIDIA GPU or driver on this machine")
            return
        except pynvml.NVMLError as error:
            self.reason = f"nvmlInit failed ({type(error).__name__}: {error})"
            return
        try:
            count = pynvml.nvmlDeviceGetCount()
            if not isinstance(self.device_id, int) or not 0 <= self.device_id < count:
                raise ValueError(f"device_id={self.device_id!r}: NVML sees {count} GPU(s), "
                                 f"indices 0..{count - 1}")
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.device_id)
            name = pynvml.nvmlDeviceGetName(self._handle)
        except (pynvml.NVMLError, ValueError) as error:
            self.reason = f"GPU {self.device_id!r} unavailable ({type(error).__name__}: {error})"
            pynvml.nvmlShutdown()
            return
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self._nvml = pynvml
        self.available = True

    def _read(self, getter: str, *args: Any) -> Any:
        """One NVML query; None when this device does not support it."""
        try:
            return getattr(self._nvml, getter)(self._handle, *args)
        except self._nvml.NVMLError:
            return None

    def record(self) -> GPUSample | None:
        """Take one sample now; None (and nothing stored) when NVML is unavailable."""
        if not self.available or self._closed:
            return None
        nvml = self._nvml
        memory = self._read("nvmlDeviceGetMemoryInfo")
        utilization = self._read("nvmlDeviceGetUtilizationRates")
        temperature = self._read("nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU)
        power_mw = self._read("nvmlDeviceGetPowerUsage")
        energy_mj = self._read("nvmlDeviceGetTotalEnergyConsumption")
        sample = GPUSample(
            time_s=time.perf_counter(),
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            gpu_utilization_percent=None if utilization is None else float(utilization.gpu),
            memory_utilization_percent=None if utilization is None else float(utilization.memory),
            temperature_c=None if temperature is None else float(temperature),
            power_w=None if power_mw is None else power_mw / 1000.0,
            energy_j=None if energy_mj is None else energy_mj / 1000.0,
        )
        with self._lock:
            self._samples.append(sample)
        return sample

    # ------------------------------------------------------------------ sampler
    def _sample_loop(self) -> None:
        while not self._stop_event.is_set():
            self.record()
            self._stop_event.wait(self.interval_s)

    def start(self) -> GPUMonitor:
        """Start background sampling (no-op when unavailable or already running)."""
        if self.available and not self._closed and self._thread is None:
            self._stop_event.clear()
            self._thread = threading.Thread(target=self._sample_loop, name="GPUMonitor",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> GPUMonitor:
        """Stop background sampling after one last sample (no-op when not running)."""
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            self._thread = None
            self.record()
        return self

    def __enter__(self) -> GPUMonitor:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def close(self) -> None:
        """Stop sampling and shut NVML down (the samples are kept)."""
        self.stop()
        if self.available and not self._closed:
            self._nvml.nvmlShutdown()
        self._closed = True

    # ------------------------------------------------------------------ results
    @property
    def samples(self) -> list[GPUSample]:
        """All samples so far, oldest first."""
        with self._lock:
            return list(self._samples)

    def get_stats(self) -> dict[str, Any]:
        """Summary of the samples (units in the key names; MB are MiB).

        Keys: ``available``, ``reason``, ``device_id``, ``name``, ``n_samples``,
        ``duration_s``; ``memory`` {used_mb (last), total_mb, peak_mb, mean_mb};
        ``utilization`` {gpu_avg_percent, gpu_max_percent, memory_avg_percent,
        memory_max_percent}; ``temperature`` {avg_c, max_c}; ``power``
        {avg_w, max_w}; ``energy`` {joules, source}: the driver's energy counter
        difference between the first and last sample when supported, else the
        trapezoidal integral of the power samples. Values are None where no
        sample supports them.
        """
        samples = self.samples
        stats: dict[str, Any] = {
            "available": self.available,
            "reason": self.reason,
            "device_id": self.device_id,
            "name": self.name,
            "n_samples": len(samples),
            "duration_s": samples[-1].time_s - samples[0].time_s if samples else 0.0,
        }
        used = _values(samples, "memory_used_bytes")
        total = _values(samples, "memory_total_bytes")
        stats["memory"] = {
            "used_mb": used[-1] / MIB if used else None,
            "total_mb": total[-1] / MIB if total else None,
            "peak_mb": max(used) / MIB if used else None,
            "mean_mb": _mean(used) / MIB if used else None,
        }
        gpu = _values(samples, "gpu_utilization_percent")
        mem = _values(samples, "memory_utilization_percent")
        stats["utilization"] = {
            "gpu_avg_percent": _mean(gpu), "gpu_max_percent": max(gpu, default=None),
            "memory_avg_percent": _mean(mem), "memory_max_percent": max(mem, default=None),
        }
        temperature = _values(samples, "temperature_c")
        stats["temperature"] = {"avg_c": _mean(temperature),
                                "max_c": max(temperature, default=None)}
        power = _values(samples, "power_w")
        stats["power"] = {"avg_w": _mean(power), "max_w": max(power, default=None)}
        energy = _values(samples, "energy_j")
        if len(energy) >= 2:
            stats["energy"] = {"joules": energy[-1] - energy[0], "source": "NVML energy counter"}
        else:
            timed = [(s.time_s, s.power_w) for s in samples if s.power_w is not None]
            stats["energy"] = {
                "joules": integrate_power_j([t for t, _ in timed], [p for _, p in timed])
                if len(timed) >= 2 else None,
                "source": "integrated power samples (trapezoid)" if len(timed) >= 2 else "none",
            }
        return stats
