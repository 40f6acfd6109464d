#!/usr/bin/env bash
# Regenerates constraints.txt: the exact set that `pip install -e '.[test]'` resolves today.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -e '.[test]'
"$tmp/venv/bin/pip" install -q --no-deps jax2onnx  # see pyproject.toml's onnx extra
"$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^-e' > requirements/constraints.txt
rm -rf "$tmp"
