#!/usr/bin/env bash
# Benchmark: whole-store `chg validate` against the I/O floor and two JSON Schema validators
# (ajv-cli, check-jsonschema) validating the same files against `chg schema`, side by side.
#
#   benches/validate.sh                 # 10,000 and 100,000 changes
#   SIZES="1000" benches/validate.sh    # a quick smoke run
#
# Needs hyperfine and GNU time (apt-get install hyperfine time); installs ajv-cli (npm) and
# check-jsonschema (pip) into $BENCH_DIR when they are missing. Prints a table and writes
# $BENCH_DIR/validate.json. A benchmark measures; it never fails on a slow machine.
source "$(dirname "$0")/common.sh"

AJV=$BENCH_DIR/node/node_modules/.bin/ajv
if [[ ! -x $AJV ]] && command -v npm >/dev/null; then
  npm install --silent --no-audit --no-fund --prefix "$BENCH_DIR/node" ajv-cli@5 ajv-formats >/dev/null 2>&1 || true
fi
CJS=$BENCH_DIR/venv/bin/check-jsonschema
if [[ ! -x $CJS ]]; then
  { python3 -m venv "$BENCH_DIR/venv" && "$BENCH_DIR/venv/bin/pip" install -q check-jsonschema; } >/dev/null 2>&1 || true
fi

rows=()
for n in $SIZES; do
  store=$BENCH_DIR/store-$n
  if [[ ! -f $store/policy/policy.yaml ]]; then
    rm -rf "$store"
    "$GEN" --changes "$n" --out "$store" >/dev/null 2>&1
  fi
  cd "$store"
  "$CHG" schema > "$BENCH_DIR/schema.json"
  find changes -name '*.yaml' | sort > "$BENCH_DIR/files-$n.txt"
  runs=$RUNS; (( n >= 100000 )) && runs=3

  measure() { # name, command...
    local name=$1; shift
    hyperfine -N -w 1 -r "$runs" --export-json "$BENCH_DIR/h.json" --ignore-failure "$*" >/dev/null 2>&1 || true
    local t; t=$(mean_s "$BENCH_DIR/h.json")
    local m; m=$(peak_mb "$@")
    rows+=("$n|$name|$t|$m")
    printf '%8s  %-34s %8.3f s %6s MB\n' "$n" "$name" "$t" "$m"
  }

  # The I/O floor: read every file once (through xargs: 100,000 names exceed ARG_MAX).
  hyperfine -N -w 1 -r "$runs" --export-json "$BENCH_DIR/h.json" \
    "sh -c 'xargs cat < $BENCH_DIR/files-$n.txt > /dev/null'" >/dev/null 2>&1
  t=$(mean_s "$BENCH_DIR/h.json"); rows+=("$n|cat (I/O floor)|$t|-")
  printf '%8s  %-34s %8.3f s\n' "$n" "cat changes/* (I/O floor)" "$t"

  measure "chg validate" "$CHG" validate
  if (( n <= 10000 )); then
    if [[ -x $AJV ]]; then
      measure "ajv-cli (same schema)" "$AJV" validate --spec=draft2020 --strict=false -c ajv-formats \
        -s "$BENCH_DIR/schema.json" -d "changes/**/*.yaml"
    fi
    if [[ -x $CJS ]]; then
      # Through a script: 10,000 names go to check-jsonschema in xargs-sized batches.
      printf 'xargs %q --schemafile %q < %q > /dev/null\n' "$CJS" "$BENCH_DIR/schema.json" "$BENCH_DIR/files-$n.txt" > "$BENCH_DIR/cjs.sh"
      runs=1 measure "check-jsonschema (same schema)" sh "$BENCH_DIR/cjs.sh"
    fi
  fi
  cd "$ROOT"
done

python3 - "$BENCH_DIR/validate.json" "${rows[@]}" <<'PY'
import json, sys
out, rows = sys.argv[1], sys.argv[2:]
table = []
for r in rows:
    n, name, t, m = r.split("|")
    table.append({"changes": int(n), "tool": name, "seconds": float(t), "peak_mb": None if m == "-" else int(m)})
for size in sorted({r["changes"] for r in table}):
    group = [r for r in table if r["changes"] == size]
    chg = next(r for r in group if r["tool"] == "chg validate")["seconds"]
    print(f"\n{size} changes")
    print(f"  {'tool':34} {'seconds':>8} {'peak MB':>8} {'vs chg':>8}")
    for r in group:
        ratio = r["seconds"] / chg if chg else 0
        r["ratio_to_chg"] = round(ratio, 2)
        peak = "-" if r["peak_mb"] is None else r["peak_mb"]
        print(f"  {r['tool']:34} {r['seconds']:8.3f} {peak:>8} {ratio:7.2f}x")
json.dump(table, open(out, "w"), indent=2)
print(f"\nwritten to {out}")
PY
