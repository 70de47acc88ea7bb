#!/usr/bin/env bash
# The Raspberry Pi side of edgekd: a virtual environment with numpy, the TFLite runtime and edgekd
# itself, nothing else (no torch, TensorFlow or ONNX Runtime). Idempotent: a second run only checks.
#
#   bash deploy/rpi/install.sh [VENV] [SRC]
#     VENV  where to create the environment (default: .venv next to SRC)
#     SRC   an edgekd source tree (default: this script's checkout)
#
# Raspberry Pi OS bookworm (64-bit) has Python 3.11 and python3-venv. ai-edge-litert publishes
# aarch64 wheels; where it has none for this board (32-bit OS), tflite-runtime is the fallback.
set -euo pipefail

SRC=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
VENV=${1:-$SRC/.venv}
PY=${PYTHON:-python3}

if [ ! -f "$SRC/pyproject.toml" ] || [ ! -d "$SRC/edgekd" ]; then
    echo "install.sh: $SRC is not an edgekd source tree (pyproject.toml and edgekd/ expected)" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" || {
        echo "install.sh: cannot create a venv with $PY; on Raspberry Pi OS: sudo apt install python3-venv" >&2
        exit 2
    }
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }

# edgekd with the rpi extra = numpy + ai-edge-litert; edgekd itself is copied, not linked, so the
# venv keeps working if the source folder is replaced by the next deploy
if ! pip install "$SRC[rpi]"; then
    echo "install.sh: ai-edge-litert has no wheel here; falling back to tflite-runtime" >&2
    pip install "$SRC" tflite-runtime
fi

# the check the bench relies on: a TFLite interpreter and no heavy framework
"$VENV/bin/python" - <<'PY'
import importlib.util, sys
runtime = next((m for m in ("ai_edge_litert", "tflite_runtime") if importlib.util.find_spec(m)), None)
heavy = [m for m in ("torch", "tensorflow", "onnxruntime") if importlib.util.find_spec(m)]
import numpy, edgekd
print(f"edgekd {edgekd.__version__}, numpy {numpy.__version__}, runtime {runtime}, python {sys.version.split()[0]}")
if runtime is None:
    sys.exit("install.sh: no TFLite runtime importable")
if heavy:
    print(f"install.sh: note: {', '.join(heavy)} also installed in this venv (not needed on the Pi)", file=sys.stderr)
PY
echo "install.sh: ready: $VENV/bin/edgekd bench --device rpi --artifacts BUNDLE"
