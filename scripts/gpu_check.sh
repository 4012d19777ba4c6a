#!/usr/bin/env bash
# GPU check for optiscale_jax, on a machine with an NVIDIA GPU and no network, from the
# source tree (no install): the gpu-marked tests, then scripts/gpu_check.py (backend
# speed, a monitored MNIST training run on CPU vs GPU, fsdp over every GPU with each GPU's
# memory_stats(), a short table). Under 5 minutes.
#
#   scripts/gpu_check.sh [--out report.json]
#
# Needs the packages of requirements-cuda.txt plus pytest. MNIST is read from
# $OPTISCALE_DATA_DIR, ./shared/data or ../shared/data (else a labelled synthetic
# stand-in). PYTHON selects the interpreter (default python3).
# Exit status: 0 all passed, 1 a check or test failed, 2 no usable GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export OPTISCALE_REQUIRE_GPU=1              # gpu-marked tests fail, not skip, without a GPU
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # NVML "used" then shows live memory, not JAX's pool
PY="${PYTHON:-python3}"

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: FAIL: nvidia-smi not found: no NVIDIA driver on this machine" >&2
  exit 2
fi
if ! nvidia-smi -L; then
  echo "gpu_check: FAIL: nvidia-smi sees no GPU" >&2
  exit 2
fi

status=0
echo "== 1/2: gpu-marked tests"
timeout 150 "$PY" -m pytest -m gpu tests -q -rs -p no:cacheprovider --continue-on-collection-errors || status=1
echo "== 2/2: backends, monitored training, fsdp (scripts/gpu_check.py)"
timeout 130 "$PY" scripts/gpu_check.py "$@"
code=$?
if [ "$code" -eq 2 ]; then exit 2; fi
if [ "$code" -ne 0 ]; then status=1; fi
echo "gpu_check: $([ "$status" -eq 0 ] && echo PASS || echo FAIL)"
exit $status
