#!/usr/bin/env bash
# Install (first run) and start Alexandria on the embedded store with the real local model.
# Extra arguments go to `alexandria serve` (e.g. --port 9000 --data-dir /var/lib/alexandria).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/alexandria serve "$@"
