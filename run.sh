#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh serve [OPTIONS]   install billing-oss into .venv and start the server
#   ./run.sh test [PYTEST ARGS] install the test tools (and Mosquitto), lint, type-check, test
#   ./run.sh sanitize           the native code built with ASan + UBSan (no -fwrapv), under its
#                               property and fuzz tests
#   ./run.sh citus [PYTEST ARGS] the `citus` tests against $BILLING_OSS_CITUS_URL, else against
#                               a one-box Citus cluster under var/citus (built when missing)
# Only Python 3.11+ is needed beforehand; everything else is installed here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

pick_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo "billing-oss needs Python 3.11 or newer" >&2; exit 2
}

# Install (or refresh, when the project's build inputs changed) into .venv.
install() {
  local extra=$1 stamp=.venv/.installed-$1
  [ -x .venv/bin/python ] || "$(pick_python)" -m venv .venv
  if [ ! -f "$stamp" ] || [ -n "$(find pyproject.toml setup.py native -newer "$stamp" \
        \( -name '*.pyx' -o -name '*.pxd' -o -name '*.toml' -o -name 'setup.py' \) -print -quit)" ]; then
    echo "installing billing-oss${extra:+ with its $extra tools} into .venv: dependencies, then" \
         "the Cython extensions are compiled (a few minutes the first time, nothing printed" \
         "meanwhile; later starts skip this)" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".${extra:+[$extra]}"
    touch "$stamp"
    echo "installed; run the CLI as .venv/bin/billing-oss, or 'source .venv/bin/activate' first" >&2
  fi
}

ensure_mosquitto() {
  # mosquitto: the broker the integration tests and `serve` run; mosquitto-clients: the
  # README's mosquitto_pub example.
  local packages=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || packages+=(mosquitto)
  command -v mosquitto_pub >/dev/null 2>&1 || packages+=(mosquitto-clients)
  [ "${#packages[@]}" -gt 0 ] || return 0
  echo "installing ${packages[*]} (MQTT broker and clients)" >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null 2>&1; then return 1; fi
  $sudo apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
}

ensure_poppler() {
  if command -v pdftotext >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1; then return; fi
  echo "installing poppler-utils (pdftotext/pdftoppm for the invoice PDF tests)" >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq poppler-utils >/dev/null
}

ensure_sftp_server() {
  # OpenSSH's sftp-server: the partner's file server in the slow SFTP test
  # (tests/integration/test_sftp_openssh.py), run unprivileged behind a loopback listener.
  if [ -x /usr/lib/openssh/sftp-server ] || [ -x /usr/libexec/sftp-server ]; then return; fi
  echo "installing openssh-sftp-server (OpenSSH's sftp-server for the slow SFTP test)" >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-sftp-server >/dev/null
}

ensure_chromium() {
  # The console's browser tests drive Debian's Chromium through Playwright (whose own browser
  # download is not used).
  if [ -x /usr/bin/chromium ]; then return; fi
  echo "installing chromium (the console's browser tests)" >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
}

# The sanitized native modules go into a copy of the package under build/sanitize, so the
# regular in-place build stays as it is; Python itself is not instrumented, so the ASan and
# UBSan runtimes are preloaded. python -P and --import-mode=append keep the repository's own
# billing_oss folder off the front of sys.path: the copy is the one imported.
SANITIZE_TESTS=(tests/unit/test_native_tap3.py tests/unit/test_native_cdr3gpp.py
                tests/unit/test_native_pgcopy.py tests/unit/test_native_probe.py
                tests/unit/test_rating.py tests/unit/test_formats_items.py
                tests/unit/test_pipeline_columnar.py tests/unit/test_native_rollup.py)
sanitize() {
  local out=build/sanitize
  rm -rf "$out" && mkdir -p "$out"
  cp -rL billing_oss "$out/"
  find "$out/billing_oss" -name '*.so' -delete
  BILLING_OSS_NATIVE_SANITIZE=1 .venv/bin/python setup.py -q build_ext --force \
    --build-lib "$out" --build-temp "$out-temp"
  local preload
  preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
  export LD_PRELOAD="$preload" PYTHONPATH="$PWD/$out"
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  .venv/bin/python -P -c 'import billing_oss.native.tap3 as m, sys; sys.exit(
    0 if "/build/sanitize/" in m.__file__ else f"not the sanitized build: {m.__file__}")'
  exec .venv/bin/python -P -m pytest --import-mode=append -p no:cacheprovider \
    "${SANITIZE_TESTS[@]}" "$@"
}

# A local MQTT broker for `serve` on 127.0.0.1:$MQTT_PORT (default 1883): one already
# listening is used; else Mosquitto is started beside the server (installed first where apt
# can), its data under $MQTT_DIR (./var/mosquitto), and stopped with it. The server
# subscribes to it through $MQTT_DIR/source.toml.
MQTT_PORT=${MQTT_PORT:-1883}
MQTT_DIR=${MQTT_DIR:-var/mosquitto}
broker_listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null
}
start_broker() {
  mkdir -p "$MQTT_DIR"
  if broker_listening; then
    echo "MQTT: using the broker on 127.0.0.1:$MQTT_PORT" >&2; return 0
  fi
  if ! { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; }; then
    ensure_mosquitto || true
  fi
  local binary; binary=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  if [ ! -x "$binary" ]; then
    echo "MQTT: no broker on 127.0.0.1:$MQTT_PORT and Mosquitto could not be installed" \
         "(apt-get install mosquitto mosquitto-clients); serving HTTP only" >&2
    return 1
  fi
  { echo "listener $MQTT_PORT 127.0.0.1"; echo "allow_anonymous true"
    echo "persistence true"; echo "persistence_location $(cd "$MQTT_DIR" && pwd)/"
    [ "$(id -u)" -ne 0 ] || echo "user root"; } > "$MQTT_DIR/mosquitto.conf"
  "$binary" -c "$MQTT_DIR/mosquitto.conf" >"$MQTT_DIR/mosquitto.log" 2>&1 &
  BROKER_PID=$!
  trap 'kill "$BROKER_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 50); do broker_listening && break; sleep 0.1; done
  if ! broker_listening; then
    echo "MQTT: Mosquitto did not start (see $MQTT_DIR/mosquitto.log); serving HTTP only" >&2
    return 1
  fi
  echo "MQTT: Mosquitto started on 127.0.0.1:$MQTT_PORT ($MQTT_DIR)" >&2
}

# The `citus` mark against a coordinator: $BILLING_OSS_CITUS_URL when set; else Citus is built
# into Debian's PostgreSQL 15 when missing (../shared/citus/build.sh, as root) and a
# coordinator with two workers is started under $CITUS_DIR (var/citus) for the run.
CITUS_SHARED=${CITUS_SHARED:-../shared/citus}
CITUS_DIR=${CITUS_DIR:-var/citus}
CITUS_PORT=${CITUS_PORT:-19700}
citus_tests() {
  if [ -n "${BILLING_OSS_CITUS_URL:-}" ]; then
    .venv/bin/python -m pytest -m citus -p no:cacheprovider "$@"; return
  fi
  if [ ! -x "$CITUS_SHARED/cluster.sh" ]; then
    echo "citus: no BILLING_OSS_CITUS_URL and no $CITUS_SHARED/cluster.sh to start a cluster" >&2
    return 2
  fi
  "$CITUS_SHARED/build.sh"
  mkdir -p "$CITUS_DIR"; CITUS_DIR=$(cd "$CITUS_DIR" && pwd)
  trap '"$CITUS_SHARED/cluster.sh" stop "$CITUS_DIR"' EXIT
  BILLING_OSS_CITUS_URL=$("$CITUS_SHARED/cluster.sh" start "$CITUS_DIR" "$CITUS_PORT" 2)
  export BILLING_OSS_CITUS_URL
  .venv/bin/python -m pytest -m citus -p no:cacheprovider "$@"
}

main() {
  case "${1:-}" in
    serve)
      shift
      install ""
      # The broker and its subscription come with the embedded defaults only: a --config of
      # one's own says where the brokers are.
      if [[ " $* " != *" --config "* ]] && start_broker; then
        printf '[sources.devices]\ntype = "mqtt"\nhost = "127.0.0.1"\nport = %s\ntopics = ["usage/#"]\n' \
          "$MQTT_PORT" > "$MQTT_DIR/source.toml"
        set -- --config "$MQTT_DIR/source.toml" "$@"
      fi
      .venv/bin/billing-oss serve "$@"
      ;;
    test)
      shift
      install dev
      ensure_mosquitto
      ensure_poppler
      ensure_sftp_server
      ensure_chromium
      .venv/bin/ruff check .
      .venv/bin/mypy -p billing_oss.core -p billing_oss.server -p billing_oss.adapters
      exec .venv/bin/python -m pytest "$@"
      ;;
    citus)
      shift
      install dev
      ensure_mosquitto
      citus_tests "$@"
      ;;
    sanitize)
      shift
      install dev
      .venv/bin/python -m pip install -q "Cython>=3.0,<4" "setuptools>=77"
      sanitize "$@"
      ;;
    *)
      echo "usage: ./run.sh serve [--config FILE] [--database-url DSN] | ./run.sh test [PYTEST ARGS]" \
           "| ./run.sh sanitize [PYTEST ARGS] | ./run.sh citus [PYTEST ARGS]" >&2
      exit 2
      ;;
  esac
}

# Sourced (tests call the functions above), nothing runs.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
