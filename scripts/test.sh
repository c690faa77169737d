#!/usr/bin/env bash
# The test command: installs what the tests need (PostgreSQL's server,
# promtool, Chromium, the Python API and browser tools, s3s-fs), then runs
# the whole suite.
#
# The tests start their own throwaway PostgreSQL cluster from the system's
# server binaries (as the `postgres` user when run as root), or use
# DATABASE_URL when it is set. Builds go to a target directory outside the
# clone, so a fresh clone reuses an earlier build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"

tools="${FERRY_TOOLS_DIR:-$HOME/.cache/ferry/tools}"

apt_install() {
  local sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_pg_server() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
if [ -z "${DATABASE_URL:-}" ] && ! have_pg_server; then
  echo "Installing PostgreSQL server binaries (apt-get install postgresql)…"
  apt_install postgresql
fi

# promtool checks and unit-tests the Prometheus alert rules.
if ! command -v promtool >/dev/null 2>&1; then
  echo "Installing promtool (Debian's prometheus package)…"
  apt_install prometheus
fi

# The browser test drives Debian's headless Chromium through the jobs page.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "Installing Chromium and its driver (Debian's chromium, chromium-driver)…"
  apt_install chromium chromium-driver
fi

# Python tools from PyPI, in a virtualenv outside the clone, made once:
# openapi-spec-validator and schemathesis check the OpenAPI document
# against a live service, selenium drives the browser.
py_tools="schemathesis==4.32.5 openapi-spec-validator==0.9.0 selenium==4.51.0"
if ! [ -f "$tools/py/.installed" ] || [ "$(cat "$tools/py/.installed")" != "$py_tools" ]; then
  echo "Installing $py_tools into $tools/py (once)…"
  python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
  rm -rf "$tools/py"
  python3 -m venv "$tools/py"
  # shellcheck disable=SC2086
  "$tools/py/bin/pip" install -q $py_tools
  echo "$py_tools" > "$tools/py/.installed"
fi
export FERRY_PY_TOOLS="$tools/py/bin"

# A real S3 server for the storage tests: s3s-fs, built once and cached
# outside the clone (0.15+ needs a newer rustc than this toolchain).
if [ -z "${FERRY_S3S_FS:-}" ]; then
  if ! [ -x "$tools/bin/s3s-fs" ]; then
    echo "Installing s3s-fs 0.14.1 into $tools (once; a few minutes)…"
    cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$tools"
  fi
  export FERRY_S3S_FS="$tools/bin/s3s-fs"
fi

# Run the suite, then say in one line what it came to.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
