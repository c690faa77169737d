#!/usr/bin/env bash
# Runs the import benchmarks and prints their tables.
#   benches/run.sh            both: nodes (CSV.gz) and matches (Parquet)
#   benches/run.sh nodes      FERRY_BENCH_ROWS=1000000,5000000 FERRY_BENCH_CASES=fresh,upsert,update,s3
#   benches/run.sh matches    FERRY_BENCH_MATCH_ROWS=2000000 FERRY_BENCH_CASES=fresh,upsert,update
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
}
case "${1:-all}" in
  nodes) cargo bench --bench import_nodes ;;
  matches) cargo bench --bench import_matches ;;
  all) cargo bench --bench import_nodes && cargo bench --bench import_matches ;;
  *) echo "usage: benches/run.sh [nodes|matches|all]" >&2; exit 2 ;;
esac
