"""GPUMonitor: the real no-GPU path on this machine, and the NVML path against a fake
``pynvml`` module (only for what cannot run here; scripts/gpu_check.sh runs it for real)."""

from __future__ import annotations

import sys
import threading
import time
import types

import jax
import numpy as np
import pynvml
import pytest

from optiscale_jax.profiling import GPUMonitor, first_gpu, integrate_power_j

MIB = 2**20


# ------------------------------------------------------------------ this machine
def test_no_driver_reports_why_and_every_call_is_a_no_op(monkeypatch):
    """The driver's absence is injected (NVML's own error), so the path runs on any machine."""
    def no_library():
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    monitor = GPUMonitor(device_id=0, interval_s=0.1)
    assert monitor.available is False
    assert "NVMLError_LibraryNotFound" in monitor.reason and "NVML library" in monitor.reason
    with monitor:
        time.sleep(0.3)                      # the sampling thread, if any, would run meanwhile
        assert monitor.record() is None
    stats = monitor.get_stats()
    assert stats["available"] is False and stats["n_samples"] == 0
    assert stats["memory"]["peak_mb"] is None and stats["energy"]["joules"] is None
    monitor.close()


def test_missing_pynvml_module_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)      # makes `import pynvml` fail
    monitor = GPUMonitor()
    assert not monitor.available and "nvidia-ml-py" in monitor.reason


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s=0"):
        GPUMonitor(interval_s=0)


# ------------------------------------------------------------------ fake NVML
class _Memory(types.SimpleNamespace):
    pass


def make_fake_nvml(script: list[dict], *, n_devices: int = 1, unsupported: tuple[str, ...] = (),
                   init_error: str | None = None) -> types.ModuleType:
    """A stand-in for pynvml answering from ``script`` (one dict per sample, the last repeated).

    Units as NVML: bytes, percent, degrees C, milliwatts, millijoules.
    """
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    nvml.NVMLError = NVMLError
    nvml.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    nvml.NVMLError_NotSupported = NVMLError_NotSupported
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.calls = {"init": 0, "shutdown": 0, "memory": 0}
    lock = threading.Lock()

    def current() -> dict:
        with lock:
            index = min(nvml.calls["memory"] - 1, len(script) - 1)
        return script[max(index, 0)]

    def query(name, build):
        def getter(handle, *args):
            assert handle == "handle-0"
            if name in unsupported:
                raise NVMLError_NotSupported(f"{name} not supported")
            return build(current(), *args)
        return getter

    def init():
        nvml.calls["init"] += 1
        if init_error == "library":
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        if init_error == "driver":
            raise NVMLError("Driver Not Loaded")

    def memory_info(handle):
        with lock:
            nvml.calls["memory"] += 1
        reading = current()
        return _Memory(used=reading["used"], total=reading["total"], free=reading["total"] - reading["used"])

    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: nvml.calls.__setitem__("shutdown", nvml.calls["shutdown"] + 1)
    nvml.nvmlDeviceGetCount = lambda: n_devices
    nvml.nvmlDeviceGetHandleByIndex = lambda index: f"handle-{index}"
    nvml.nvmlDeviceGetName = lambda handle: b"Fake H200"
    nvml.nvmlDeviceGetMemoryInfo = memory_info
    nvml.nvmlDeviceGetUtilizationRates = query(
        "utilization", lambda r: types.SimpleNamespace(gpu=r["gpu"], memory=r["mem"]))
    nvml.nvmlDeviceGetTemperature = query("temperature", lambda r, sensor: r["temp"])
    nvml.nvmlDeviceGetPowerUsage = query("power", lambda r: r["power_mw"])
    nvml.nvmlDeviceGetTotalEnergyConsumption = query("energy", lambda r: r["energy_mj"])
    return nvml


SCRIPT = [
    {"used": 1 * 2**30, "total": 141 * 2**30, "gpu": 10, "mem": 5, "temp": 40,
     "power_mw": 100_000, "energy_mj": 5_000_000},
    {"used": 3 * 2**30, "total": 141 * 2**30, "gpu": 90, "mem": 70, "temp": 60,
     "power_mw": 300_000, "energy_mj": 5_050_000},
    {"used": 2 * 2**30, "total": 141 * 2**30, "gpu": 50, "mem": 30, "temp": 50,
     "power_mw": 200_000, "energy_mj": 5_100_000},
]


def test_fake_nvml_statistics_and_units(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml(SCRIPT))
    monitor = GPUMonitor(device_id=0)
    assert monitor.available and monitor.reason == "" and monitor.name == "Fake H200"
    samples = [monitor.record() for _ in SCRIPT]
    assert samples[1].power_w == 300.0 and samples[1].energy_j == 5_050.0   # mW -> W, mJ -> J
    stats = monitor.get_stats()
    used = np.array([r["used"] for r in SCRIPT], float)
    assert stats["n_samples"] == 3
    assert stats["memory"]["peak_mb"] == used.max() / MIB == 3 * 1024
    assert stats["memory"]["mean_mb"] == pytest.approx(used.mean() / MIB)
    assert stats["memory"]["used_mb"] == used[-1] / MIB
    assert stats["memory"]["total_mb"] == 141 * 1024
    assert stats["utilization"] == {
        "gpu_avg_percent": pytest.approx(np.mean([10, 90, 50])), "gpu_max_percent": 90.0,
        "memory_avg_percent": pytest.approx(np.mean([5, 70, 30])), "memory_max_percent": 70.0}
    assert stats["temperature"] == {"avg_c": 50.0, "max_c": 60.0}
    assert stats["power"] == {"avg_w": pytest.approx(200.0), "max_w": 300.0}
    assert stats["energy"] == {"joules": pytest.approx(100.0), "source": "NVML energy counter"}
    monitor.close()
    assert sys.modules["pynvml"].calls["shutdown"] == 1
    assert monitor.record() is None                     # closed: a no-op, stats kept
    assert monitor.get_stats()["n_samples"] == 3


def test_fake_nvml_energy_from_power_when_the_counter_is_unsupported(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml(SCRIPT, unsupported=("energy",)))
    monitor = GPUMonitor()
    for _ in SCRIPT:
        monitor.record()
        time.sleep(0.01)
    samples = monitor.samples
    assert all(s.energy_j is None for s in samples)
    times = np.array([s.time_s for s in samples])
    power = np.array([s.power_w for s in samples])
    expected = float(np.sum((power[1:] + power[:-1]) / 2 * np.diff(times)))
    energy = monitor.get_stats()["energy"]
    assert energy["source"].startswith("integrated power")
    assert energy["joules"] == pytest.approx(expected, rel=1e-12)
    assert integrate_power_j([0.0, 1.0, 3.0], [100.0, 300.0, 200.0]) == 200.0 + 500.0


def test_fake_nvml_unsupported_readings_are_left_out(monkeypatch):
    fake = make_fake_nvml(SCRIPT, unsupported=("power", "energy", "temperature"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monitor = GPUMonitor()
    sample = monitor.record()
    assert sample.power_w is None and sample.temperature_c is None
    assert sample.memory_used_bytes == SCRIPT[0]["used"]
    stats = monitor.get_stats()
    assert stats["power"] == {"avg_w": None, "max_w": None}
    assert stats["energy"] == {"joules": None, "source": "none"}


def test_fake_nvml_background_sampler(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml(SCRIPT))
    before = {t.name for t in threading.enumerate()}
    with GPUMonitor(interval_s=0.01) as monitor:
        assert "GPUMonitor" in {t.name for t in threading.enumerate()} - before
        time.sleep(0.3)
    assert "GPUMonitor" not in {t.name for t in threading.enumerate()} - before
    stats = monitor.get_stats()
    assert stats["n_samples"] >= 5
    assert stats["duration_s"] >= 0.25
    assert stats["memory"]["peak_mb"] == 3 * 1024


@pytest.mark.parametrize("kwargs,device_id,expected", [
    ({"init_error": "library"}, 0, "NVML library not found"),
    ({"init_error": "driver"}, 0, "nvmlInit failed (NVMLError: Driver Not Loaded)"),
    ({"n_devices": 2}, 5, "device_id=5: NVML sees 2 GPU(s)"),
])
def test_fake_nvml_failures_become_reasons(monkeypatch, kwargs, device_id, expected):
    fake = make_fake_nvml(SCRIPT, **kwargs)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monitor = GPUMonitor(device_id=device_id)
    assert not monitor.available and expected in monitor.reason
    monitor.start().stop()
    assert monitor.record() is None and monitor.get_stats()["n_samples"] == 0
    if kwargs.get("n_devices"):
        assert fake.calls["shutdown"] == 1              # NVML released after a bad index


def test_first_gpu_says_why_there_is_none_here():
    device, why = first_gpu()
    if jax.default_backend() == "gpu":
        assert device is not None and why == ""
    else:
        assert device is None and "gpu" in why.lower()
