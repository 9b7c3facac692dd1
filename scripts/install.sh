#!/usr/bin/env bash
# One-step set-up: Debian packages the app, data rendering and tests need, then a virtual
# environment (.venv) with the pinned Python requirements. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  libsndfile1 ffmpeg sox espeak-ng                       # decoding, torchcodec, test speech
  fluidsynth timidity freepats                           # renderers
  fluid-soundfont-gm musescore-general-soundfont timgm6mb-soundfont csound-soundfont avldrums.lv2-soundfont
  sonic-pi-samples lmms-common                           # real samples for evaluation
  chromium                                               # the browser test (driven by Python playwright)
)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
