#!/usr/bin/env bash
# Make `reasongen` typeable after install: a symlink in ~/.local/bin (or $REASONGEN_BIN_DIR) when that folder is on
# PATH, else say how to activate the virtual environment. Says what it did. Usage: put_on_path.sh PATH/TO/reasongen
set -euo pipefail
target="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
dir="${REASONGEN_BIN_DIR:-$HOME/.local/bin}"
activate="source $(dirname "$target")/activate"
if [ "${REASONGEN_NO_LINK:-}" = "1" ]; then
  echo "Not linking (REASONGEN_NO_LINK=1). To type reasongen: $activate"
elif [[ ":$PATH:" != *":$dir:"* ]]; then
  echo "To type reasongen: $activate   (or add $(dirname "$target") to PATH; $dir is not on PATH, so nothing was linked)"
elif [ -e "$dir/reasongen" ] && [ "$(readlink "$dir/reasongen" || true)" != "$target" ]; then
  echo "Left $dir/reasongen alone (it is not this install's). To use this one: $activate"
else
  mkdir -p "$dir"
  ln -sfn "$target" "$dir/reasongen"
  echo "Linked $dir/reasongen -> $target: type reasongen (remove the link to undo)"
fi
