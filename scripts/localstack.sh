#!/usr/bin/env bash
# LocalStack (community) as a second AWS emulator, without Docker (DESIGN.md, "Local and test
# environments"). Usage:
#   scripts/localstack.sh setup   make .venv-localstack (Python 3.13, requirements-localstack.txt)
#   scripts/localstack.sh test    setup, start LocalStack, run tests/localstack, stop it (exit: pytest's)
#   scripts/localstack.sh start   setup, start LocalStack and keep it up until Ctrl-C
#
# LocalStack listens on 127.0.0.1:4566 (LOCALSTACK_PORT). Its DynamoDB would run DynamoDB Local,
# which needs a Java download that cannot happen here; LocalStack forwards its DynamoDB requests
# to DYNAMODB_LOCAL_PORT, so a moto server (from the project's .venv) takes DynamoDB Local's place
# behind LocalStack's own DynamoDB API. Lambda and Batch need Docker: the state machine's Lambda
# tasks are answered from tests/localstack/sfn_mock_config.json (SFN_MOCK_CONFIG) and the tests
# run the real cleanup handler with the payload the execution sent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

LS_VENV=${LS_VENV:-.venv-localstack}
LS_REQUIREMENTS=requirements-localstack.txt
LS_STAMP="$LS_VENV/.installed"
LS_HOST=127.0.0.1
LS_PORT=${LOCALSTACK_PORT:-4566}
LS_ENDPOINT="http://$LS_HOST:$LS_PORT"
START_TIMEOUT_S=${LOCALSTACK_START_TIMEOUT_S:-120}
PROJECT_BIN=${PROJECT_BIN:-.venv/bin}
MOCK_CONFIG="$ROOT/tests/localstack/sfn_mock_config.json"

now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

is_python313() { [[ -n "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; }

python313() {
  local candidate
  for candidate in "${LOCALSTACK_PYTHON:-}" "$(command -v python3.13 || true)" \
    "$(PYENV_VERSION=3.13.0 pyenv which python 2>/dev/null || true)" /root/.pyenv/versions/3.13.0/bin/python3; do
    if is_python313 "$candidate"; then echo "$candidate"; return; fi
  done
  echo "localstack.sh: no Python 3.13 found (set LOCALSTACK_PYTHON)" >&2
  return 1
}

setup() {
  if [[ -f "$LS_STAMP" && "$LS_STAMP" -nt "$LS_REQUIREMENTS" ]]; then return; fi
  local started python
  started=$(now)
  python=$(python313)
  rm -rf "$LS_VENV"
  "$python" -m venv "$LS_VENV"
  # --no-deps: the pin file lists every transitive package, so pip resolves nothing;
  # --no-compile: byte-code is written on first import instead (most modules are never imported).
  if ! "$LS_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-compile \
    -r "$LS_REQUIREMENTS" >"$LS_VENV/install.log" 2>&1; then
    grep -v "^WARNING: Location" "$LS_VENV/install.log" >&2
    echo "localstack.sh: installing $LS_REQUIREMENTS failed" >&2
    return 1
  fi
  touch "$LS_STAMP"
  echo "localstack.sh: installed $LS_VENV in $(seconds_since "$started") s"
}

free_port() {
  "$PROJECT_BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK_DIR=""
MOTO_PID=""
LS_PID=""

stop_services() {
  local pid
  for pid in "$LS_PID" "$MOTO_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  LS_PID=""
  MOTO_PID=""
  if [[ -n "$WORK_DIR" && -z "${LOCALSTACK_KEEP_LOGS:-}" ]]; then rm -rf "$WORK_DIR"; fi
}

start_services() {
  if "$PROJECT_BIN/python" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('$LS_HOST', $LS_PORT)) != 0)"; then
    echo "localstack.sh: $LS_HOST:$LS_PORT is in use already; stop what listens there first" >&2
    return 1
  fi
  local started moto_port ls_python
  started=$(now)
  ls_python="$(cd "$LS_VENV" && pwd)/bin/python"  # LS_VENV may be relative; LocalStack runs elsewhere
  WORK_DIR=$(mktemp -d -t reconflow-localstack-XXXXXX)
  trap stop_services EXIT
  trap 'exit 130' INT TERM

  moto_port=$(free_port)
  "$PROJECT_BIN/moto_server" -H "$LS_HOST" -p "$moto_port" >"$WORK_DIR/moto.log" 2>&1 &
  MOTO_PID=$!

  (
    cd "$WORK_DIR"
    exec env GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="$LS_HOST:$LS_PORT" DISABLE_EVENTS=1 \
      DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 LOCALSTACK_VOLUME_DIR="$WORK_DIR/volume" \
      DYNAMODB_LOCAL_PORT="$moto_port" SFN_MOCK_CONFIG="$MOCK_CONFIG" \
      "$ls_python" -m localstack.runtime.main
  ) >"$WORK_DIR/localstack.log" 2>&1 &
  LS_PID=$!

  local deadline=$((SECONDS + START_TIMEOUT_S))
  until curl -sf "$LS_ENDPOINT/_localstack/health" 2>/dev/null | grep -q '"s3": "\(available\|running\)"'; do
    if ! kill -0 "$LS_PID" 2>/dev/null || ((SECONDS > deadline)); then
      echo "localstack.sh: LocalStack did not come up; its log:" >&2
      tail -n 40 "$WORK_DIR/localstack.log" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "localstack.sh: LocalStack up at $LS_ENDPOINT in $(seconds_since "$started") s (DynamoDB behind it: moto on port $moto_port; logs in $WORK_DIR)"
}

run_suite() {
  local started status=0
  started=$(now)
  LOCALSTACK_ENDPOINT="$LS_ENDPOINT" "$PROJECT_BIN/pytest" tests/localstack -p no:cacheprovider "$@" || status=$?
  echo "localstack.sh: suite took $(seconds_since "$started") s"
  if ((status != 0)) && [[ -n "$WORK_DIR" ]]; then
    echo "localstack.sh: last lines of the LocalStack log:" >&2
    tail -n 30 "$WORK_DIR/localstack.log" >&2
  fi
  return "$status"
}

command=${1:-test}
shift || true
case "$command" in
  setup) setup ;;
  test)
    setup
    start_services
    run_suite "$@"
    ;;
  start)
    setup
    start_services
    echo "localstack.sh: LOCALSTACK_ENDPOINT=$LS_ENDPOINT; Ctrl-C stops it"
    wait "$LS_PID"
    ;;
  *)
    echo "usage: scripts/localstack.sh [setup|test|start] [pytest args]" >&2
    exit 2
    ;;
esac
