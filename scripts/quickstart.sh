#!/usr/bin/env bash
# Fresh machine -> finished run: set up, then fine-tune Whisper tiny.en with LoRA on the
# embedded default (offline TTS speech) and print the base vs adapted table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/audiolora train "$@"
