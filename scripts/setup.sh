#!/usr/bin/env bash
# Create the virtual environment and install fedlora into it.
#   TORCH_SPEC   what to install as torch first (default torch==2.13.0, the CPU wheel); e.g. TORCH_SPEC=torch
#                on a GPU machine. torch goes first so that no other package pulls a newer CUDA build.
#   FEDLORA_VENV where the environment lives (default .venv)
#   $1           extras to install (default: dev)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FEDLORA_VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${1:-dev}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
