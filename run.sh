#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh serve [OPTIONS]   install billing-oss into .venv and start the server
#   ./run.sh test [PYTEST ARGS] install the test tools (and Mosquitto), lint, type-check, test
#   ./run.sh sanitize           the native code built with ASan + UBSan (no -fwrapv), under its
#                               property and fuzz tests
# Only Python 3.11+ is needed beforehand; everything else is installed here.
set -euo pipefail
cd "$(dirname "$0")"

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
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".${extra:+[$extra]}"
    touch "$stamp"
  fi
}

ensure_mosquitto() {
  # mosquitto: the broker the integration tests run; mosquitto-clients: the README's
  # mosquitto_pub example.
  local packages=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || packages+=(mosquitto)
  command -v mosquitto_pub >/dev/null 2>&1 || packages+=(mosquitto-clients)
  [ "${#packages[@]}" -gt 0 ] || return 0
  echo "installing ${packages[*]} (MQTT broker and clients)" >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
}

ensure_poppler() {
  if command -v pdftotext >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1; then return; fi
  echo "installing poppler-utils (pdftotext/pdftoppm for the invoice PDF tests)" >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq poppler-utils >/dev/null
}

# The sanitized native modules go into a copy of the package under build/sanitize, so the
# regular in-place build stays as it is; Python itself is not instrumented, so the ASan and
# UBSan runtimes are preloaded. python -P and --import-mode=append keep the repository's own
# billing_oss folder off the front of sys.path: the copy is the one imported.
SANITIZE_TESTS=(tests/unit/test_native_tap3.py tests/unit/test_native_cdr3gpp.py
                tests/unit/test_native_pgcopy.py tests/unit/test_native_probe.py
                tests/unit/test_rating.py tests/unit/test_formats_items.py)
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

case "${1:-}" in
  serve)
    shift
    install ""
    exec .venv/bin/billing-oss serve "$@"
    ;;
  test)
    shift
    install dev
    ensure_mosquitto
    ensure_poppler
    .venv/bin/ruff check .
    .venv/bin/mypy -p billing_oss.core -p billing_oss.server -p billing_oss.adapters
    exec .venv/bin/python -m pytest "$@"
    ;;
  sanitize)
    shift
    install dev
    .venv/bin/python -m pip install -q "Cython>=3.0,<4" "setuptools>=77"
    sanitize "$@"
    ;;
  *)
    echo "usage: ./run.sh serve [--config FILE] [--database-url DSN] | ./run.sh test [PYTEST ARGS]" \
         "| ./run.sh sanitize [PYTEST ARGS]" >&2
    exit 2
    ;;
esac
