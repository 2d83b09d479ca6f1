#!/usr/bin/env bash
# The CUDA path, checked and measured, on a machine with a GPU. Fails loudly without one.
#   bash benchmarks/gpu_check.sh            (after `make venv`; PY=python to use another interpreter)
# Prints: the card; the step benchmark on cuda (steps/s, s/epoch, TFLOP/s, fraction of the card's
# measured matmul rate) for every family; 200-epoch paper-size trials per family (eager and
# compiled); the paper spec's projected time on this GPU; and several trials per GPU through Ray.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

"$PY" - <<'PYEOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: FAILED: torch sees no CUDA device (torch %s, CUDA build %s)" % (torch.__version__, torch.version.cuda))
print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB", flush=True)
PYEOF
date -u +"date: %Y-%m-%d %H:%M UTC"

echo "== step benchmark, eager, 200 epochs per family at paper size =="
"$PY" benchmarks/step.py --device cuda --epochs 200
echo "== the same, compiled step (torch.compile, CUDA graphs) =="
"$PY" benchmarks/step.py --device cuda --epochs 200 --compile --no-projection
echo "== several trials per GPU (Ray Tune, resources.gpu = 1, 0.5, 0.25) =="
"$PY" benchmarks/gpu_share.py
