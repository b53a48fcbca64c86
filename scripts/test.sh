#!/usr/bin/env bash
# Install (first run) and run the whole check: ruff (lint + format), mypy --strict, and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "== ruff"; .venv/bin/ruff check src tests bench devtools
.venv/bin/ruff format --check src tests bench devtools
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest -n 2 -q "$@"
