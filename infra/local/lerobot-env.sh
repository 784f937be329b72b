#!/usr/bin/env bash
# A separate virtual environment with the real `lerobot` library, for the interop tests
# (tests/tasks/robot/test_lerobot_interop.py, marker `lerobot`). lerobot 0.4.4 pins an older
# torch than the project (torch<2.11), so it is installed with --no-deps next to the project's
# CPU torch 2.13.0, with only what `lerobot.datasets` imports: no CUDA wheel, no policy, robot or
# simulation stack. Videos decode through torchcodec 0.13.0 (the newest CPU wheel that loads with
# torch 2.13; lerobot's pyav fallback needs torchvision.io.VideoReader, gone from torchvision).
# PyPI's torchvision 0.28.0 is a CUDA build: its C++ ops cannot load beside the CPU torch, and
# its import then fails on two fake-kernel registrations; a startup file declares those two op
# schemas so the pure-Python part imports (lerobot.datasets runs no torchvision op on videos).
# Idempotent; prints the environment's python as the last line.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${LEROBOT_VENV:-.lerobot-venv}
PY=${LEROBOT_PYTHON:-$(command -v python3.11 || echo "$HOME/.pyenv/versions/3.11.7/bin/python")}
LEROBOT_VERSION=0.4.4
DEPS=(
    "torchvision==0.28.0" "datasets==4.4.1" "huggingface-hub==0.35.3" "av==15.1.0"
    "jsonlines==4.0.0" "draccus==0.10.0" "einops==0.8.1" "termcolor==3.1.0" "deepdiff==8.6.1"
    "packaging==25.0" "pandas==3.1.1" "pyarrow==26.0.1" "pillow==13.0.0" "numpy==2.4.6"
    "imageio==2.37.0" "psutil==7.2.2" "safetensors==0.8.0" "pyyaml==6.0.4" "pyserial==3.5"
)
NO_DEPS=("lerobot==$LEROBOT_VERSION" "accelerate==1.10.1" "torchcodec==0.13.0")
stamp="$VENV/.lerobot-env-stamp"
want=$(echo "${DEPS[*]} ${NO_DEPS[*]}" | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[lerobot-env] building $VENV (lerobot $LEROBOT_VERSION, CPU torch 2.13.0)" >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2; }
    # The CPU wheel first (as infra/local/setup.sh), so nothing pulls a multi-GB CUDA build.
    pip_install "torch==2.13.0"
    pip_install "${DEPS[@]}"
    pip_install --no-deps "${NO_DEPS[@]}"
    "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.version.cuda is not None)" || {
        echo "[lerobot-env] torch in $VENV is a CUDA build; refusing" >&2; exit 1; }
    site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    if ! "$VENV/bin/python" -c "import torchvision" 2>/dev/null; then
        cat > "$site/vjepa_torchvision_schemas.py" <<'PY'
"""Written by infra/local/lerobot-env.sh: declares the two torchvision op schemas whose fake
kernels torchvision registers at import, since its CUDA-built C++ ops cannot load here."""

import torch

_LIBRARY = torch.library.Library("torchvision", "DEF")
_LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
PY
        echo "import vjepa_torchvision_schemas" > "$site/vjepa_torchvision_schemas.pth"
    fi
    "$VENV/bin/python" -c "import lerobot.datasets.lerobot_dataset, lerobot.processor, torchcodec.decoders" >&2
    echo "$want" > "$stamp"
fi
echo "$(cd "$VENV" && pwd)/bin/python"
