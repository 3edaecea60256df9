#!/usr/bin/env bash
# The CUDA checks, run on a lent GPU machine in one call of the device tool, from the repository
# root there, with the wheels of scripts/device_kit.sh carried:
#   run(command="bash scripts/device_checks.sh", carry=[".whl"], timeout_s=600)
#   run(command="bash scripts/device_checks.sh tests", carry=[".whl"], timeout_s=600)
# The first installs the wheels beside the image's torch and runs benchmarks/cuda_checks.py
# (bf16 LoRA, NF4 double-quant QLoRA, int8, paged 8- and 32-bit AdamW, recomputed activations
# and two processes on a random-weight model of TinyLlama-1.1B's language-model shape; ~5 min).
# `tests` runs the test suite there instead (tests that need TTS or the pip-installed models
# skip: the image has neither). What comes back lies in $OUT: cuda_checks.json, the failing
# sides' logs, and the test report. SIZE=tiny STEPS=4 try the script itself on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/device}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || { echo "wheels did not install: carry .whl" >&2; exit 2; }
export PYTHONPATH="$PWD/src:/tmp/site" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, bitsandbytes, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'bitsandbytes', bitsandbytes.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
if [ "${1:-checks}" = tests ]; then
  workers=$(( $(nproc) > 8 ? 8 : $(nproc) ))
  timeout 450 python3 -m pytest -q -p no:cacheprovider -n "$workers" -rfE tests 2>&1 | tee "$OUT/tests.log" | tail -40
  exit "${PIPESTATUS[0]}"
fi
rm -rf /tmp/cuda-checks/cuda_checks.json
timeout 450 python3 benchmarks/cuda_checks.py --size "${SIZE:-1b}" --steps "${STEPS:-20}" \
  --out /tmp/cuda-checks
status=$?
cp /tmp/cuda-checks/cuda_checks.json "$OUT/" 2>/dev/null
# The logs of failed sides (the files that come back are few: at most six logs).
python3 - "$OUT" <<'EOF'
import json, shutil, sys
from pathlib import Path
result = Path("/tmp/cuda-checks/cuda_checks.json")
if result.exists():
    failed = [s for s in json.loads(result.read_text())["sides"] if "failed" in s]
    for side in failed[:6]:
        shutil.copy(side["log"], Path(sys.argv[1]) / Path(side["log"]).name)
EOF
exit $status
