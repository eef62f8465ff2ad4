#!/usr/bin/env bash
# The GPU check in one call (docs/gpu.md): bash benchmarks/gpu_check.sh OUT_DIR [--reference PATH] [...]
# Everything it measures lands in OUT_DIR; see benchmarks/gpu_check.py for the sections and options.
# PYTHON picks the interpreter (default: .venv/bin/python when present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUT_DIR [--reference PATH [--reference-deps DIR]] [--budget S] [--sections LIST] [--dry-run]" >&2
    exit 2
fi
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
