#!/usr/bin/env bash
# Runs the import benchmark and prints its table. Sizes and cases:
#   FERRY_BENCH_ROWS=1000000,5000000 FERRY_BENCH_CASES=fresh,upsert,update benches/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
}
cargo bench --bench import_nodes
