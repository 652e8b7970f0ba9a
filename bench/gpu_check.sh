#!/usr/bin/env bash
# The GPU checks this CPU-only project cannot run in CI: the tiny model in
# fp16 on CUDA, batched against one by one, then with Accelerate's model
# offload; prints images/s and peak accelerator memory. About a minute.
#
#   bash bench/gpu_check.sh               # on a machine with CUDA torch and the package installed
#
# On a machine whose Python lacks the package's pure-Python dependencies
# (diffusers, trio, attrs, structlog, hypercorn, starlette…), carry them as
# wheels in .whl/ (see bench/README.md); this script installs them first.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

if [ -d .whl ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/hydramesh-site .whl/*.whl
    export PYTHONPATH="/tmp/hydramesh-site:$PWD/.gpu-src${PYTHONPATH:+:$PYTHONPATH}"
    # The package itself, importable as hydramesh.* without installing it.
    rm -rf .gpu-src && mkdir -p .gpu-src/hydramesh
    for part in common runtime head worker client; do ln -s "$PWD/$part" ".gpu-src/hydramesh/$part"; done
fi

"$python" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
      f"{torch.cuda.mem_get_info()[0] / 2**30:.1f} GiB free, HIP: {torch.version.hip}")
PY

models=$(mktemp -d)
run() { echo; echo "== $*"; "$python" bench/batching.py --models-dir "$models" "$@"; }
# fp16 is the default dtype on CUDA; batching at two sizes, then offload.
run --device cuda --size 64 --steps 20 --images 16 --batches 1,4,8,16 --runs 3
run --device cuda --size 512 --steps 20 --images 8 --batches 1,4,8 --runs 2
run --device cuda --size 512 --steps 20 --images 8 --batches 1,4 --runs 2 --offload model
run --device cuda --size 512 --steps 10 --images 4 --batches 1 --runs 1 --offload sequential
