#!/usr/bin/env bash
# Install reasongen into ./.venv. Usage: bash scripts/install.sh [EXTRAS]   (default: all; "test" for the suite)
# On a machine without an NVIDIA GPU, torch is pinned to a release whose CPU build pip can take
# (set REASONGEN_TORCH_INDEX to a CPU wheel index to force a CPU build elsewhere); with a GPU, pip's default.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if [ "$extras" != "core" ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${pip[@]}" torch
  else
    "${pip[@]}" ${REASONGEN_TORCH_INDEX:+--index-url "$REASONGEN_TORCH_INDEX"} "torch==2.13.0"
  fi
fi
if [ "$extras" = "core" ]; then "${pip[@]}" -e .; else "${pip[@]}" -e ".[$extras]"; fi
echo "reasongen installed in .venv (extras: $extras). Run: .venv/bin/reasongen --help"
