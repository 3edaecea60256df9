#!/usr/bin/env bash
# Fresh machine -> finished run: set up, then fine-tune Whisper tiny.en with LoRA on the
# embedded default (offline TTS speech) and print the base vs adapted table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
if [ $# -eq 0 ]; then
  # A fresh run folder each time, so running the quickstart twice never collides.
  set -- --output-dir "runs/quickstart-$(date +%Y%m%d-%H%M%S)"
fi
exec .venv/bin/audiolora train "$@"
