#!/usr/bin/env bash
# The benchmark suite: every chg command on generated stores with their full history, side
# by side with what git itself takes for the same work, and peak memory of each.
#
#   benches/suite.sh                    # 10,000 and 100,000 changes (generating 100,000 takes minutes)
#   SIZES="1000" benches/suite.sh       # a quick smoke run
#   SIGN=1 benches/suite.sh             # also: verification of signed records (a second store
#                                       # generated with --sign), against the unsigned one
#   STYLES="chg" benches/suite.sh       # only chg's own file layout (default: chg and hand,
#                                       # files as people write YAML, which chg's fast reader
#                                       # does not take)
#
# Needs hyperfine and GNU time (apt-get install hyperfine time). Stores are generated once
# into $BENCH_DIR/hist-N-$GEN_FORMAT (deterministic, seed 1) and reused; every transition is measured
# from the same commit (hyperfine --prepare resets the store). Prints a table with ratios
# and writes $BENCH_DIR/suite.json so runs can be compared. It measures; it never fails on a
# slow machine.
source "$(dirname "$0")/common.sh"

export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
export GIT_CONFIG_NOSYSTEM=1 HOME=$BENCH_DIR

rows=()
for n in $SIZES; do
for style in ${STYLES:-chg hand}; do
  store=$BENCH_DIR/hist-$n-$GEN_FORMAT
  [[ $style == chg ]] || store=$store-$style
  generated=
  if [[ ! -f $store/policy/policy.yaml ]]; then
    rm -rf "$store"
    echo "generating $n changes ($style style) with history into $store ..." >&2
    /usr/bin/time -o "$BENCH_DIR/gen.time" -f '%e %M' "$GEN" --changes "$n" --out "$store" --history --style "$style" >/dev/null 2>&1
    generated=$(cat "$BENCH_DIR/gen.time")
  fi
  cd "$store"
  # A long-lived repository has a commit-graph (git gc writes one), which `git log` and
  # `chg audit` both walk; a fresh clone has none (GRAPH=0 measures that). Automatic gc is
  # off, so that no commit made by a run repacks or writes a graph between measurements.
  git config gc.auto 0
  if [[ ${GRAPH:-1} == 1 ]]; then
    [[ -e .git/objects/info/commit-graph ]] || git commit-graph write --reachable >/dev/null 2>&1
  else
    rm -rf .git/objects/info/commit-graph .git/objects/info/commit-graphs
  fi
  # Every run starts from the generated history, whatever an interrupted run left behind.
  git rev-parse -q --verify refs/bench/base >/dev/null || git update-ref refs/bench/base HEAD
  base=$(git rev-parse refs/bench/base)
  git reset -q --hard "$base"
  reset="git reset -q --hard $base"
  runs=$RUNS; (( n >= 100000 )) && runs=3
  commits=$(git rev-list --count HEAD)
  echo "== $n changes, $commits commits" >&2
  if [[ -n $generated ]]; then
    read -r secs kb <<<"$generated"
    rows+=("$n/$style|$commits|generate the store (chg-bench-gen --history)|generate|$secs|$((kb / 1024))")
  fi

  # name, group (what the ratio compares against), command...
  measure() {
    local name=$1 group=$2; shift 2
    local prep=${PREP:-true} cmd
    printf -v cmd '%q ' "$@"
    # A command that fails is a broken benchmark, not a fast one: stop and say so.
    eval "$prep" >/dev/null 2>&1 || true
    "$@" >/dev/null 2>"$BENCH_DIR/err" || { echo "bench: $name failed: $(cat "$BENCH_DIR/err")" >&2; exit 1; }
    hyperfine -N -w "${WARM:-1}" -r "${R:-$runs}" --prepare "sh -c '$prep'" --export-json "$BENCH_DIR/h.json" \
      "$cmd" >/dev/null
    local t; t=$(mean_s "$BENCH_DIR/h.json")
    eval "$prep" >/dev/null 2>&1 || true
    local m; m=$(peak_mb "$@")
    rows+=("$n/$style|$commits|$name|$group|$t|$m")
    printf '%8s  %-44s %9.4f s %6s MB\n' "$n" "$name" "$t" "$m" >&2
  }

  # Pick the changes to act on: one pending change and the role it still needs, one
  # approved change with a schedule outside any freeze, one closed change.
  read -r pending role member approved at closed < <("$CHG" list --json | python3 -c '
import json, sys
members = {"change-manager": "cm@example.com", "engineering-manager": "em@example.com",
           "security-team": "sec1@example.com", "security-team-lead": "sec-lead@example.com"}
rows = json.load(sys.stdin)
p = next(r for r in rows if r["status"] == "pending_approval" and r["missing_roles"])
a = next(r for r in rows if r["status"] == "approved" and r.get("schedule")
         and not ("2025-12-19" < r["schedule"]["start"] < "2026-01-05"))
c = next(r for r in rows if r["status"] == "closed")
import datetime
start = datetime.datetime.fromisoformat(a["schedule"]["start"].replace("Z", "+00:00"))
at = (start + datetime.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
print(p["id"], p["missing_roles"][0], members[p["missing_roles"][0]], a["id"], at, c["id"])
')
  pfile=$(git ls-files "changes/*/$pending.yaml")
  afile=$(git ls-files "changes/*/$approved.yaml")
  # Approve, implement and gate read the change's verified history from the audit index:
  # every run starts from the index as it is at the generated tip (a reset to that tip with
  # the index of a later commit would read as a rewritten history and rebuild it).
  "$CHG" audit >/dev/null 2>&1 || true
  # ... and with the policy's standing at that tip kept (validate asks it): without it every
  # transition of a fresh store walks the whole history back to the last policy change.
  "$CHG" validate >/dev/null 2>&1 || true
  rm -rf "$BENCH_DIR/warm-chg" && cp -a .git/chg "$BENCH_DIR/warm-chg"
  reset="git reset -q --hard $base && rm -rf .git/chg && cp -a $BENCH_DIR/warm-chg .git/chg"

  # chg approve vs git add && git commit of the very same edit.
  GIT_AUTHOR_EMAIL=$member "$CHG" approve "$pending" --role "$role" >/dev/null
  cp "$pfile" "$BENCH_DIR/approved.yaml"; eval "$reset"
  PREP="$reset" GIT_AUTHOR_EMAIL=$member measure "chg approve" approve \
    env GIT_AUTHOR_EMAIL="$member" "$CHG" approve "$pending" --role "$role"
  PREP="$reset && cp $BENCH_DIR/approved.yaml $pfile" measure "git add && git commit (same edit)" approve \
    sh -c "git add $pfile && git commit -q -m approve"

  CHG_NOW=$at GIT_AUTHOR_EMAIL=ops1@example.com "$CHG" implement "$approved" >/dev/null
  cp "$afile" "$BENCH_DIR/implemented.yaml"; eval "$reset"
  PREP="$reset" measure "chg implement" implement \
    env CHG_NOW="$at" GIT_AUTHOR_EMAIL=ops1@example.com "$CHG" implement "$approved"
  PREP="$reset && cp $BENCH_DIR/implemented.yaml $afile" measure "git add && git commit (same edit)" implement \
    sh -c "git add $afile && git commit -q -m implement"

  PREP="$reset" measure "chg new (id allocation)" new \
    env GIT_AUTHOR_EMAIL=dev1@example.com "$CHG" new --title "Bench change" --description d \
    --justification j --type feature --priority low --risk low --system api --plan p --rollback r
  eval "$reset"

  measure "chg gate ID (audit index warm)" gate "$CHG" gate "$approved" --at "$at"
  PREP="rm -rf .git/chg/audit" R=1 WARM=0 measure "chg gate ID (fresh clone: builds the index)" gate-cold \
    "$CHG" gate "$approved" --at "$at"
  eval "$reset"

  measure "chg show ID" show "$CHG" show "$closed"
  measure "chg log ID" log "$CHG" log "$closed"
  measure "git log -- FILE (git's own)" log git log --format=%H -- "$(git ls-files "changes/*/$closed.yaml")"
  measure "chg list --status approved" list "$CHG" list --status approved
  measure "chg validate" validate "$CHG" validate
  # The floor: reading every change file once.
  measure "cat every change file (the floor)" validate sh -c "find changes -name '*.yaml' -exec cat {} + > /dev/null"
  measure "chg report" report "$CHG" report
  # Cold: no read summary yet (a fresh clone's first query builds it).
  PREP="rm -rf .git/chg/summary" R=1 WARM=0 measure "chg list --status approved (cold: builds the summary)" list \
    "$CHG" list --status approved
  # With the file-system monitor (git config chg.fsmonitor true): a warm query asks it what
  # changed instead of looking at every file; git status is the floor of looking at them.
  git config chg.fsmonitor true
  "$CHG" list >/dev/null 2>&1; "$CHG" list >/dev/null 2>&1
  measure "chg list --status approved (chg.fsmonitor)" list "$CHG" list --status approved
  measure "chg report (chg.fsmonitor)" report "$CHG" report
  measure "git status (every file's lstat)" list git status --porcelain
  git config --unset chg.fsmonitor
  for lock in .git/chg/summary/*/monitor.lock; do
    [[ -s $lock ]] && kill "$(cat "$lock")" 2>/dev/null || true
  done
  # One run each at 100,000 changes (half a minute each); at 10,000 one run was a draw of
  # this VM's noise (1.58 s in one suite, 1.77 s median of eight), so five.
  full_runs=$((n >= 100000 ? 1 : 5))
  R=$full_runs WARM=0 measure "chg audit --full" audit "$CHG" audit --full
  R=$full_runs WARM=0 measure "git log --name-status" audit sh -c "git log --name-status > /dev/null"
  measure "chg audit (incremental, nothing new)" audit-incremental "$CHG" audit

  if [[ -n ${SIGN:-} ]]; then
    # The same store generated with every approval signed: what verification costs.
    signed=$BENCH_DIR/hist-$n-$GEN_FORMAT-signed
    if [[ ! -f $signed/policy/policy.yaml ]]; then
      rm -rf "$signed"
      echo "generating $n signed changes with history into $signed ..." >&2
      "$GEN" --changes "$n" --out "$signed" --history --sign >/dev/null 2>&1
    fi
    proven=$signed/.git/chg/proven-signatures
    measure "chg validate (unsigned store)" signing "$CHG" validate
    measure "chg audit --full (unsigned store)" signing-audit "$CHG" audit --full
    cd "$signed"
    # The same signed files with verification turned off (the work tree's policy without
    # its signing section, which validate judges by): what reading signed files costs.
    printf '%s\n' 'git checkout -q policy/policy.yaml && sed -i "/^signing:/,\$d" policy/policy.yaml' >"$BENCH_DIR/unsign.sh"
    PREP="sh $BENCH_DIR/unsign.sh" \
      measure "chg validate (signed store, verification off)" signing "$CHG" validate
    git checkout -q policy/policy.yaml
    PREP="rm -f $proven" measure "chg validate (signed, first run)" signing "$CHG" validate
    measure "chg validate (signed, proofs kept)" signing "$CHG" validate
    R=3 WARM=0 measure "chg audit --full (signed store)" signing-audit "$CHG" audit --full
  fi
  cd "$ROOT"
done
done

python3 - "$BENCH_DIR/suite.json" "${rows[@]}" <<'PY'
import json, sys
out, rows = sys.argv[1], sys.argv[2:]
table = []
for r in rows:
    n, commits, name, group, t, m = r.split("|")
    size, style = n.split("/")
    table.append({"changes": int(size), "style": style, "commits": int(commits), "command": name,
                  "group": group, "seconds": float(t), "peak_mb": int(m) if m else None})
for size, style in sorted({(r["changes"], r["style"]) for r in table}):
    group = [r for r in table if r["changes"] == size and r["style"] == style]
    print(f"\n{size} changes ({style} style), {group[0]['commits']} commits")
    print(f"  {'command':44} {'seconds':>9} {'peak MB':>8} {'ratio':>7}")
    for r in group:
        first = next(x for x in group if x["group"] == r["group"])
        ratio = r["seconds"] / first["seconds"] if first is not r and first["seconds"] else None
        r["ratio_to_first_of_group"] = round(1 / ratio, 4) if ratio else None
        shown = f"{1/ratio:6.3f}x" if ratio else ""
        print(f"  {r['command']:44} {r['seconds']:9.4f} {r['peak_mb'] or '-':>8} {shown:>7}")
json.dump(table, open(out, "w"), indent=2)
print(f"\nratio: the first command of the group (chg) divided by this one (git). written to {out}")
PY
