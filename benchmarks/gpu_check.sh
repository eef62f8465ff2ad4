#!/usr/bin/env bash
# The GPU check in one call (docs/gpu.md): bash benchmarks/gpu_check.sh OUT_DIR [--reference PATH] [...]
# Everything it measures lands in OUT_DIR; see benchmarks/gpu_check.py for the sections and options.
# PYTHON picks the interpreter (default: .venv/bin/python when present, else python3).
set -euo pipefail
# relative OUT_DIR / --reference / --workdir stay relative to the caller's folder: no cd
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUT_DIR [--reference PATH [--reference-deps DIR]] [--budget S] [--sections LIST] [--dry-run]" >&2
    exit 2
fi
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" "$ROOT/benchmarks/gpu_check.py" "$@"
