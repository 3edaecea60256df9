#!/usr/bin/env bash
# Wheels for a lent GPU machine, which has no network: the Python packages audiolora needs that
# its image lacks or holds at other versions, at the versions this checkout's .venv runs
# (so the code there is the code the tests pass with), for CPython 3.12 on x86-64 Linux, in
# .whl/ (git-ignored). bitsandbytes is repacked with only its CPU and CUDA 13 libraries (7 MB
# instead of 43), so everything travels inside the device tool's 64 MiB. Taken from the image:
# torch, numpy, pandas, pyarrow, scipy, scikit-learn, matplotlib, PyYAML, tqdm, psutil,
# sacrebleu, and for the tests pytest, pytest-xdist and hypothesis. Then, on that machine:
#   bash scripts/device_checks.sh          (see there; carry .whl)
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY="accelerate annotated-doc annotated-types anyio bitsandbytes cffi click datasets dill fsspec
h11 hf-xet httpcore2 httpx2 huggingface_hub idna jiwer kernels markdown-it-py mdurl multiprocess
peft pycparser pydantic pydantic_core Pygments RapidFuzz regex rich safetensors shellingham sniffio
soundfile soxr tokenizers tomlkit transformers truststore typer typing-inspection
typing_extensions xxhash"
normalized() { tr 'A-Z_.' 'a-z--' <<<"$1"; }
freeze=$(.venv/bin/python -m pip freeze 2>/dev/null)
pins=()
for name in $CARRY; do
  pin=$(grep -i "^$(normalized "$name" | sed 's/-/[-_.]/g')==" <<<"$freeze" || true)
  [ -n "$pin" ] || { echo "not in .venv: $name (run scripts/setup.sh)" >&2; exit 2; }
  pins+=("$pin")
done
rm -rf .whl && mkdir -p .whl
platforms=()
for n in 2_17 2_24 2_27 2_28 2_31 2_34 2_35; do platforms+=(--platform "manylinux_${n}_x86_64"); done
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
# bitsandbytes ships libraries for every CUDA and ROCm release; keep the CPU and CUDA 13 ones.
bnb=$(ls .whl/bitsandbytes-*.whl)
work=$(mktemp -d)
(cd "$work" && python3 -m zipfile -e "$OLDPWD/$bnb" . \
  && rm -f bitsandbytes/libbitsandbytes_cuda1[12]*.so bitsandbytes/libbitsandbytes_rocm*.so \
       bitsandbytes/libbitsandbytes_xpu*.so \
  && record=$(ls -d bitsandbytes-*.dist-info)/RECORD \
  && grep -v -E 'libbitsandbytes_(cuda1[12]|rocm|xpu)' "$record" >"$record.new" \
  && mv "$record.new" "$record" && rm "$OLDPWD/$bnb" && python3 -m zipfile -c "$OLDPWD/$bnb" .)
rm -rf "$work"
echo "wheels: $(ls .whl | wc -l), $(du -sh .whl | cut -f1); tracked tree: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes"
