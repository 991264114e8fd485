#!/usr/bin/env bash
# Install everything the tests need (dev and the flower extra), then run ruff and the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,flower
VENV=${FEDLORA_VENV:-.venv}
"$VENV/bin/ruff" check src tests benchmarks
exec "$VENV/bin/python" -m pytest "$@"
