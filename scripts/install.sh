#!/usr/bin/env bash
# Install reasongen into ./.venv. Usage: bash scripts/install.sh [EXTRAS]
#   EXTRAS: core (no extras: a teacher-only worker, no torch), local, train, all (default), test.
# On a machine without an NVIDIA GPU, torch is pinned to a release whose CPU build pip can take
# (set REASONGEN_TORCH_INDEX to a CPU wheel index to force a CPU build elsewhere); with a GPU, pip's default.
# Afterwards `reasongen` is linked into ~/.local/bin when that is on PATH (REASONGEN_NO_LINK=1 to skip);
# otherwise the script says how to activate .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
case "$extras" in
  core|none) extras=core ;;  # "none" is the old name
  local|train|all|test) ;;
  *) echo "error: unknown extras '$extras'; use one of: core, local, train, all, test" >&2; exit 2 ;;
esac
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
echo "reasongen installed in .venv (extras: $extras)."
bash scripts/put_on_path.sh .venv/bin/reasongen
