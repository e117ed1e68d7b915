#!/usr/bin/env bash
# The standard preset on the lent GPU machine (issue 10, item 7: 100 views of 512², goal <= 60 s end to
# end), in one device call. Prepare here first: `make gpu-kit` (the engine's wheels for the machine's
# Python 3.12, whose image already holds torch, numpy, scipy, scikit-image, OpenCV, Pillow, and Spot).
# Then: run(command="bash bench/gpu_run.sh", carry=[".gpu-kit"], timeout_s=590). What comes back under
# $OUT: environment.txt (GPU, driver, versions), reconstruction_gpu.txt (the bench's report), log.txt.
#
# OBJECTS (default: spot) and PRESETS (default: standard) choose the cases; PYTHON the interpreter
# (default: python3, the image's, with torch); DEVICE (default: cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/reconflow-gpu-out}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
OBJECTS=${OBJECTS:-spot}
PRESETS=${PRESETS:-standard}
KIT=.gpu-kit
SITE=/tmp/reconflow-gpu-site
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

test -d "$KIT/wheels" || { echo "no $KIT/wheels: run 'make gpu-kit' and carry $KIT" >&2; exit 2; }
# The kit's wheels beside the image's packages (a venv would not see the image's own venv's torch).
"$PYTHON" -m pip install --quiet --no-index --no-deps --target "$SITE" "$KIT"/wheels/*.whl
export PYTHONPATH="$SITE:$PWD:$PWD/functions"

{
    date -u +"%Y-%m-%d %H:%M UTC"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
    "$PYTHON" - <<'EOF'
import numpy, scipy, skimage, torch, trimesh
print(f"python torch {torch.__version__} (cuda available: {torch.cuda.is_available()}), numpy {numpy.__version__}, "
      f"scipy {scipy.__version__}, scikit-image {skimage.__version__}, trimesh {trimesh.__version__}")
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0))
EOF
} 2>&1 | tee "$OUT/environment.txt"

# shellcheck disable=SC2086  # OBJECTS and PRESETS are word lists
"$PYTHON" bench/reconstruction.py --spot "$KIT/spot" --objects $OBJECTS --presets $PRESETS --repeats 1 \
    --device "$DEVICE" --work /tmp/reconflow-gpu-work --out "$OUT/reconstruction_gpu.txt" 2>&1 | tee "$OUT/log.txt"
