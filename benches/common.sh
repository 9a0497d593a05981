# Shared by the benchmark scripts (sourced, not run): settings, tool checks, the release
# build, and the two measurements every script takes (mean time from hyperfine's JSON, peak
# resident memory from GNU time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BENCH_DIR=${BENCH_DIR:-/tmp/chg-bench}
SIZES=${SIZES:-"10000 100000"}
RUNS=${RUNS:-10}
# Stores are reused between runs; a generator that writes something new (standard changes
# from a template, since issue 16) bumps this so a stale store is never measured.
GEN_FORMAT=g2
mkdir -p "$BENCH_DIR"

command -v hyperfine >/dev/null || { echo "bench: install hyperfine (apt-get install hyperfine)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "bench: install GNU time (apt-get install time)" >&2; exit 2; }

cargo build --release --locked --features bench-tools --quiet
CHG=$ROOT/target/release/chg
GEN=$ROOT/target/release/chg-bench-gen

# Peak resident memory in MB; a command that exits non-zero (findings) is fine here.
peak_mb() {
  local f; f=$(mktemp)
  /usr/bin/time -o "$f" -f '%M' "$@" >/dev/null 2>&1 || true
  awk 'END {printf "%.0f", $1/1024}' "$f"; rm -f "$f"
}
mean_s() { python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["results"][0]["mean"])' "$1"; }
