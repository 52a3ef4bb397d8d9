#!/usr/bin/env bash
# Create benchmarks/peers/.venv: the peer libraries, isolated from jaxhedge's environment
# (torch must not share a process or a BLAS thread pool with JAX during the timings).
#   bash benchmarks/peers/setup.sh            # then: jaxhedge bench (peers run as subprocesses)
# Override the interpreter with PYTHON=/path/to/python3.11.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
"$python" -m venv "$here/.venv"
"$here/.venv/bin/python" -m pip install --quiet "torch==2.13.0" "pfhedge==0.23.0"
"$here/.venv/bin/python" -c "import torch, pfhedge; print('torch', torch.__version__, 'pfhedge', pfhedge.__version__)"
