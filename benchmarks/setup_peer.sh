#!/usr/bin/env bash
# The peer of benchmarks/curation.py in its own venv (.venv-peer): video2dataset 1.3.0 pins
# torch 2.1.2 (CUDA wheels) and older transformers, so it must not touch the project's .venv.
# Only what its subsampler stages import is installed (--no-deps; ffmpeg-python drives the same
# system ffmpeg the project uses), so nothing pulls torch or CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
[ -x .venv-peer/bin/python ] || "$PYTHON" -m venv .venv-peer
.venv-peer/bin/pip install --quiet --no-deps video2dataset==1.3.0 ffmpeg-python==0.2.0 future==1.0.0
.venv-peer/bin/python benchmarks/peers/video2dataset_stages.py --help >/dev/null
echo "peer ready: $(.venv-peer/bin/pip show video2dataset | grep -i '^version')"
