#!/usr/bin/env bash
# Runs the benchmarks and prints their tables.
#   benches/run.sh            all four: nodes (CSV.gz), matches (Parquet), service, export
#   benches/run.sh nodes      FERRY_BENCH_ROWS=1000000,5000000 FERRY_BENCH_CASES=fresh,upsert,update,changed,sync,s3,contract FERRY_BENCH_RUNS=1
#   benches/run.sh matches    FERRY_BENCH_MATCH_ROWS=2000000 FERRY_BENCH_CASES=fresh,upsert,update,shards FERRY_BENCH_RUNS=3
#   benches/run.sh service    FERRY_BENCH_LATENCY_JOBS=200 FERRY_BENCH_TINY_JOBS=1000 FERRY_BENCH_BIG_ROWS=1000000 FERRY_BENCH_EXPORTS=100
#   benches/run.sh export     FERRY_BENCH_ROWS=1000000 FERRY_BENCH_BIG_ROWS=5000000 FERRY_BENCH_BIG_RUNS=1 FERRY_BENCH_RUNS=3 FERRY_BENCH_CASES=formats,users
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}"
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
}
case "${1:-all}" in
  nodes) cargo bench --bench import_nodes ;;
  matches) cargo bench --bench import_matches ;;
  service) cargo bench --bench service ;;
  export) cargo bench --bench export ;;
  all) cargo bench --bench import_nodes && cargo bench --bench import_matches && cargo bench --bench service && cargo bench --bench export ;;
  *) echo "usage: benches/run.sh [nodes|matches|service|export|all]" >&2; exit 2 ;;
esac
