#!/usr/bin/env bash
# Lints the infrastructure: cfn-lint and `sam validate --lint` on template.yaml, checkov on it
# (findings suppressed only in the template, with a reason), parliament on every IAM policy of the
# SAM-transformed template (findings justified only in the template), and statelint on the ASL files.
# The tools live in .venv-tools/ (two venvs: aws-sam-cli and checkov pin clashing boto3 versions),
# installed from fully pinned files with --no-deps, and rebuilt only when a pin file changes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
TOOLS=.venv-tools
export SAM_CLI_TELEMETRY=0 # no network calls from SAM CLI
export BC_SKIP_MAPPING=TRUE  # no network calls from checkov

# ensure_venv NAME PINS: (re)create $TOOLS/NAME from PINS unless its stamp is newer than PINS.
ensure_venv() {
  local venv="$TOOLS/$1" pins="$2"
  if [[ -f "$venv/.installed" && "$venv/.installed" -nt "$pins" ]]; then
    return 0
  fi
  rm -rf "$venv"
  mkdir -p "$TOOLS"
  "$PYTHON" -m venv "$venv"
  # --no-deps: the pin file lists every transitive package, so pip resolves nothing;
  # --no-compile: byte-code is written on first import instead (most modules are never imported).
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-compile -r "$pins" \
    >"$TOOLS/$1-install.log" 2>&1; then
    grep -v "^WARNING: Location" "$TOOLS/$1-install.log" >&2
    echo "lint-infra: installing $pins failed" >&2
    return 1
  fi
  touch "$venv/.installed"
}

started=$SECONDS
ensure_venv sam requirements-tools.txt &
sam_install=$!
ensure_venv checkov requirements-tools-checkov.txt &
checkov_install=$!
wait "$sam_install"
wait "$checkov_install"
echo "lint-infra: tools ready in $((SECONDS - started)) s"

echo "== cfn-lint template.yaml"
"$TOOLS/sam/bin/cfn-lint" template.yaml
echo "== sam validate --lint"
"$TOOLS/sam/bin/sam" validate --lint --template-file template.yaml
echo "== checkov"
"$TOOLS/checkov/bin/checkov" --config-file scripts/checkov.yaml
echo "== parliament (IAM policies of the transformed template)"
.venv/bin/python -m reconflow.local.iam_lint
echo "== statelint"
"$TOOLS/sam/bin/statelint" statemachine/*.asl.json
echo "lint-infra: all clean in $((SECONDS - started)) s"
