#!/usr/bin/env bash
# One-time (idempotent) set-up of a development machine: ffmpeg from Debian's
# packages, a virtual environment in .venv with the CPU build of torch and the
# pinned dependency set of infra/constraints.txt, and the project itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VJEPA_VENV:-.venv}
PY=${PYTHON:-python3}

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    echo "[setup] installing ffmpeg (Debian package)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi
# Headless MuJoCo rendering (MUJOCO_GL=egl, the default of `vjepa collect`): Mesa's EGL
# (software llvmpipe without a GPU); OSMesa as the fallback (MUJOCO_GL=osmesa).
if ! ldconfig -p 2>/dev/null | grep -q libEGL_mesa; then
    echo "[setup] installing Mesa EGL/OSMesa for headless MuJoCo rendering (Debian packages)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libegl1 libegl-mesa0 libgl1 \
        libosmesa6 >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.vjepa-setup-stamp"
want=$(cat pyproject.toml infra/constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing Python dependencies into $VENV (first run takes a minute or two)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # The CPU wheel first, so nothing pulls a multi-GB CUDA build.
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -c infra/constraints.txt -e ".[test,sim]"
    echo "$want" > "$stamp"
fi
echo "[setup] ready: $("$VENV/bin/python" --version), ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3)"
