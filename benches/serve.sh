#!/usr/bin/env bash
# `chg serve` under load: requests/s and p50/p99 latency of reads (list, show, gate, a change
# page) and of approvals through the API, at 10,000 and 100,000 changes, with the CLI's time
# for the same approval beside them.
#
#   benches/serve.sh                    # 10,000 and 100,000 changes
#   SIZES="10000" DURATION=5 benches/serve.sh
#
# The load generator is wrk (apt-get install wrk; installed here when missing and running as
# root). Stores are the suite's ($BENCH_DIR/hist-N-$GEN_FORMAT, generated when missing) and
# are reset to their generated tip afterwards. It measures; it never fails on a slow machine.
source "$(dirname "$0")/common.sh"

if ! command -v wrk >/dev/null; then
  if [[ $(id -u) == 0 ]]; then
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
  else
    echo "bench: install wrk (apt-get install wrk)" >&2
    exit 2
  fi
fi

export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
export GIT_CONFIG_NOSYSTEM=1 HOME=$BENCH_DIR
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-8}
PORT=${PORT:-18080}
API=/api/v1/change-management/change-requests
results=()

# wrk's requests/s, p50 and p99 (ms) and non-2xx count from its --latency output.
wrk_row() {
  python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, t, re.M)
    if not m: return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
print("%.1f %.1f %.1f %s" % (float(rps.group(1)) if rps else 0, ms("50"), ms("99"), non2xx.group(1) if non2xx else 0))
PY
}

for n in $SIZES; do
  store=$BENCH_DIR/hist-$n-$GEN_FORMAT
  if [[ ! -f $store/policy/policy.yaml ]]; then
    rm -rf "$store"
    echo "generating $n changes with history into $store ..." >&2
    "$GEN" --changes "$n" --out "$store" --history >/dev/null 2>&1
  fi
  cd "$store"
  git rev-parse -q --verify refs/bench/base >/dev/null || git update-ref refs/bench/base HEAD
  base=$(git rev-parse refs/bench/base)
  git reset -q --hard "$base"
  echo "== $n changes" >&2
  trap 'kill "${server:-0}" 2>/dev/null || true' EXIT

  # Pending changes that still need the change manager, for the approvals (the API's and the
  # CLI's), and one change to read.
  "$CHG" list --json --status pending_approval | python3 -c '
import json, sys
rows = [r["id"] for r in json.load(sys.stdin) if "change-manager" in r["missing_roles"]]
open("'"$BENCH_DIR"'/pending.txt", "w").write("\n".join(rows) + "\n")
' 
  mapfile -t pending < "$BENCH_DIR/pending.txt"
  read_id=${pending[0]}
  cli_ids=("${pending[@]: -5}")
  api_ids=("${pending[@]:1:${#pending[@]}-6}")
  echo "   ${#pending[@]} changes await the change manager" >&2

  # Approvals and the gate read verified history from the audit index: every run starts from
  # the index as it is at the generated tip (a reset to that tip with the index of a later
  # commit would read as a rewritten history and rebuild it).
  "$CHG" audit >/dev/null 2>&1 || true
  # And the policy's standing at that tip (kept under .git/chg by the first step that asks):
  # without it, the first approval of every run would walk the whole history to find it.
  "$CHG" gate "$read_id" >/dev/null 2>&1 || true
  rm -rf "$BENCH_DIR/warm-chg-$n" && cp -a .git/chg "$BENCH_DIR/warm-chg-$n"
  reset() { git reset -q --hard "$base" && rm -rf .git/chg && cp -a "$BENCH_DIR/warm-chg-$n" .git/chg; }

  token=$("$CHG" token create cm@example.com 2>/dev/null)
  "$CHG" serve --listen "127.0.0.1:$PORT" --timeout 600 >"$BENCH_DIR/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/api/v1/openapi.json" && break; sleep 0.2; done
  auth="Authorization: Bearer $token"
  cookie=$(curl -s -o /dev/null -D - -d "token=$token" "http://127.0.0.1:$PORT/signin" | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p')
  # One request of each first: the read index is warm from then on.
  for path in "$API?status=pending_approval&limit=50" "$API/$read_id" "$API/$read_id/gate"; do
    curl -s -o /dev/null -H "$auth" "http://127.0.0.1:$PORT$path" || true
  done
  curl -s -o /dev/null -H "Cookie: $cookie" "http://127.0.0.1:$PORT/" || true

  read_bench() {
    local name=$1 path=$2 header=$3
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "$header" "http://127.0.0.1:$PORT$path" >"$BENCH_DIR/wrk.txt" 2>&1
    read -r rps p50 p99 bad < <(wrk_row "$BENCH_DIR/wrk.txt")
    results+=("$n|$name|$rps|$p50|$p99|$bad|")
    printf '%8s  %-34s %8.1f req/s  p50 %7.1f ms  p99 %7.1f ms  non-2xx %s\n' "$n" "$name" "$rps" "$p50" "$p99" "$bad" >&2
  }
  read_bench "GET list (pending, 50)" "$API?status=pending_approval&limit=50" "$auth"
  read_bench "GET change" "$API/$read_id" "$auth"
  read_bench "GET gate" "$API/$read_id/gate" "$auth"
  read_bench "page /changes/ID" "/changes/$read_id" "Cookie: $cookie"
  read_bench "page / (waiting for me)" "/" "Cookie: $cookie"

  # Approvals: each request approves another pending change (one commit each, under the
  # store lock), as the change manager.
  printf '%s\n' "${api_ids[@]}" >"$BENCH_DIR/ids.txt"
  cat >"$BENCH_DIR/approve.lua" <<LUA
local ids = {}
for line in io.lines("$BENCH_DIR/ids.txt") do ids[#ids + 1] = line end
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"approved": true, "comments": "bench"}'
request = function()
  counter = counter + 1
  local id = ids[((counter - 1) % #ids) + 1]
  return wrk.format(nil, "$API/" .. id .. "/approve")
end
LUA
  wrk -t1 -c4 -d"${DURATION}s" --latency -s "$BENCH_DIR/approve.lua" "http://127.0.0.1:$PORT" >"$BENCH_DIR/wrk.txt" 2>&1
  read -r rps p50 p99 bad < <(wrk_row "$BENCH_DIR/wrk.txt")
  results+=("$n|POST approve (one commit each)|$rps|$p50|$p99|$bad|")
  printf '%8s  %-34s %8.1f req/s  p50 %7.1f ms  p99 %7.1f ms  non-2xx %s\n' "$n" "POST approve" "$rps" "$p50" "$p99" "$bad" >&2

  # "Waiting for me" when HEAD has just moved (nothing kept for the new HEAD yet), and a
  # few seconds later (the server's background refresh has read the new commit): each
  # sample approves another change through the API, then asks for the page once.
  after_move() {
    local name=$1 pause=$2 ids=("${@:3}") times=() id t
    for id in "${ids[@]}"; do
      curl -s -o /dev/null -H "$auth" -H 'Content-Type: application/json' \
        -d '{"approved": true, "comments": "bench"}' "http://127.0.0.1:$PORT$API/$id/approve"
      sleep "$pause"
      t=$(curl -s -o /dev/null -w '%{time_total}' -H "Cookie: $cookie" "http://127.0.0.1:$PORT/")
      times+=("$t")
    done
    read -r p50 max < <(printf '%s\n' "${times[@]}" | sort -n | awk '{v[NR]=$1*1000} END {printf "%.1f %.1f\n", v[int((NR+1)/2)], v[NR]}')
    moved+=("$n|$name|1 at a time|$p50|$max (max of ${#ids[@]})|0|")
    printf '%8s  %-34s p50 %7.1f ms  max %7.1f ms\n' "$n" "$name" "$p50" "$max" >&2
  }
  moved=()
  late=("${api_ids[@]: -10}")
  after_move "page / right after HEAD moved" 0 "${late[@]:0:5}"
  after_move "page / 3 s after HEAD moved" 3 "${late[@]:5:5}"

  kill -TERM "$server"; wait "$server" || true
  reset

  # The CLI's time for the same approval, on 5 other changes, from the same state.
  cli_ms=$(python3 - "$CHG" "${cli_ids[@]}" <<'PY'
import os, subprocess, sys, time
chg, ids = sys.argv[1], sys.argv[2:]
env = dict(os.environ, GIT_AUTHOR_NAME="cm", GIT_AUTHOR_EMAIL="cm@example.com",
           GIT_COMMITTER_NAME="cm", GIT_COMMITTER_EMAIL="cm@example.com")
times = []
for i in ids:
    t = time.monotonic()
    subprocess.run([chg, "approve", i, "--role", "change-manager"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append((time.monotonic() - t) * 1000)
times.sort()
print("%.1f" % times[len(times) // 2])
PY
)
  last=$((${#results[@]} - 1))
  results[$last]="${results[$last]}$cli_ms"
  echo "   CLI: chg approve (same step): $cli_ms ms (median of 5)" >&2
  results+=("${moved[@]}")
  reset
  cd "$ROOT"
done

echo
echo "| changes | request | requests/s | p50 ms | p99 ms | non-2xx | CLI, same approval (ms) |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"
for r in "${results[@]}"; do
  IFS='|' read -r n name rps p50 p99 bad cli <<<"$r"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$name" "$rps" "$p50" "$p99" "$bad" "$cli"
done
