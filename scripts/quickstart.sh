#!/usr/bin/env bash
# Install everything, then run the quickstart: MiniLM + LoRA on GLUE MRPC across 10 simulated clients.
# Extra arguments go to `fedlora run` (e.g. --set stop.versions=5, --out runs/mine, --resume).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
if [ -z "${FEDLORA_DATA_DIR:-}" ] && [ -d ../shared/data/glue ]; then
  export FEDLORA_DATA_DIR="$(cd ../shared/data/glue && pwd)"
fi
exec "${FEDLORA_VENV:-.venv}/bin/fedlora" run configs/quickstart.yaml "$@"
