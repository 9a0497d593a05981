#!/usr/bin/env bash
# Guards that no test can lose: deletes each security guard of chg in turn (in a scratch
# worktree of HEAD, with its own target folder) and runs the test suite; a guard whose
# deletion leaves every test green SURVIVES: a claim that no test holds.
#
#   benches/mutants.sh --list       # the guards, numbered
#   benches/mutants.sh              # every guard (about 1.5 minutes each on 2 cores)
#   benches/mutants.sh 3 7          # only guards 3 and 7
#
# Not in CI: it builds and tests the crate once per guard. Prints one line per guard and a
# summary; exits 1 when a guard survives, or when a guard's code is no longer found (the
# list is kept with the code: a renamed guard must be updated here).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRATCH=${MUTANTS_DIR:-/tmp/chg-mutants}

# Each guard: `=== what it protects`, `file: PATH`, `--- ` then the guard's code exactly,
# `+++ ` then what replaces it (the guard deleted or made to always let through).
# Not listed: the governance-role check in `audit::governance`'s `Governance::applied` beside
# the replay of the implement step (the replay already requires the governance roles: a second
# line of defence, which no test can tell from the first).
GUARDS=$(cat <<'EOF'
=== audit: the signatures of the records a chg-looking commit adds
file: src/audit/checks.rs
---
        out.extend(self.new_record_signatures(before, after));
+++
        let _ = (before, after);
=== validate: a standard change that conforms to no template
file: src/rules.rs
---
    if !change.status().is_terminal()
        && let Some(why) = policy.template_problem(change)
+++
    if false
        && let Some(why) = policy.template_problem(change)
=== implement and gate: a standard change that conforms to no template
file: src/rules/implement.rs
---
    if let Some(why) = policy.template_problem(change) {
        push(
+++
    if let Some(why) = None::<String> {
        push(
=== every step refuses while a slipped-in policy is at HEAD
file: src/store/policy.rs
---
        if change.proposed_policy.is_some() {
            return Ok(());
        }
        self.ensure_authorized_policy()
+++
        let _ = change;
        Ok(())
=== policy apply: a change whose history does not verify
file: src/store/policy.rs
---
        match crate::standing::of(self, id, now)?.refusal(&id.to_string()) {
            Some(r) => Err(r.into()),
            None => Ok(()),
        }
+++
        let _ = (id, now);
        Ok(())
=== gate: a change whose history does not verify
file: src/store/policy.rs
---
        out.extend(standing.refusal(&id.to_string()));
+++
        let _ = &standing;
=== standing: an exception in a change's history is not undone by later steps
file: src/standing.rs
---
                    open = Some((first, blob(e, true)?));
+++
                    let _ = first;
=== governance: an apply is the proposal's own implement step, replayed
file: src/audit/governance.rs
---
        if expected != after || !missing_governance(&before, authority).is_empty() {
+++
        if !missing_governance(&before, authority).is_empty() {
=== policy apply: a proposal based on an older policy is refused
file: src/store/policy.rs
---
        if change.policy_base != base {
+++
        if false && change.policy_base != base {
=== governance: a merge may not take over a governed line's policy
file: src/audit/governance.rs
---
            if !newer {
+++
            if false && !newer {
=== governance: a restore counts only when it returns to the governing policy
file: src/audit/governance.rs
---
        if tree == governing_tree {
+++
        if tree == governing_tree || true {
=== audit: records a merge brings are judged by the policy they enter
file: src/audit/auditor.rs
---
        if facts.merge {
            self.brought_records(&facts, &items, seq, &mut out)?;
        }
+++
        let _ = &items;
=== segregation of duties on proven identities (creator, content author)
file: src/rules/approval.rs
---
    let same = |who: &str| who.eq_ignore_ascii_case(approver);
+++
    let same = |_who: &str| false;
=== signatures: a key's time limits judged no earlier than history proves
file: src/audit/auditor.rs
---
        if let Some(last) = governance.last_change(parent, None)? {
            let c = self.repo.find_commit(last)?;
            if let Ok(t) = Timestamp::from_second(c.committer().when().seconds()) {
                floor = floor.max(t);
            }
        }
        Ok(Some(floor))
+++
        let _ = (governance, parent, floor);
        Ok(None)
=== audit: a standard change judged by the templates in force where it was filed
file: src/audit/auditor.rs
---
        if let Some(why) = policy.template_problem(after) {
            return Ok(Some(why));
        }
+++
        let _ = &policy;
=== audit: a standard change filed under a policy that was slipped in
file: src/audit/auditor.rs
---
            Some((at, crate::governance::Standing::Unauthorized(_))) => Some(format!(
+++
            Some((at, crate::governance::Standing::Unauthorized(_))) if false => Some(format!(
=== signed requests and edits: the content record
file: src/rules/signatures.rs
---
    match (&after.content_signature, written) {
+++
    match (&after.content_signature, written && false) {
=== who may declare an emergency
file: src/rules/approval.rs
---
    if !declared || roles.iter().any(|r| policy.is_member(r, actor)) {
+++
    if !declared || true {
=== a policy proposal holds files under policy/ only
file: src/governance.rs
---
        .find_map(|p| path_problem(p))
+++
        .find_map(|_p| None::<String>)
=== approve: a change whose risk is understated
file: src/workflow/roles.rs
---
    if let Some(p) = rules::risk_problems(change, policy).first() {
+++
    if false && let Some(p) = rules::risk_problems(change, policy).first() {
=== approve: the requester may not approve
file: src/rules/approval.rs
---
    if requester_refusal(change, policy, actor, "approve").is_some() {
        out.push(Decider::Requester);
    }
+++
    let _ = requester_refusal(change, policy, actor, "approve");
=== signatures: the arithmetic of a signature
file: src/signing/allowed_signers.rs
---
            Some(None) => Verdict::Transplanted { fingerprint },
+++
            Some(None) => Verdict::Valid {
                fingerprint,
                passkey,
                attested: None,
            },
=== signing: a step is refused without a usable key
file: src/store/transition.rs
---
    let wanted = policy.requires_signature(action) || ctx.sign_unrequired;
+++
    let wanted = ctx.sign_unrequired;
=== gate: a change that records a step dated in the future
file: src/store/policy.rs
---
                .take(1)
+++
                .take(0)
=== the time order of steps
file: src/workflow/apply.rs
---
    if applied.is_ok()
        && records_time
+++
    if applied.is_ok()
        && false
=== implement: a change whose history does not verify
file: src/store/transition.rs
---
        if implement && let Some(r) = standing.as_ref().and_then(|st| st.refusal(&id.to_string())) {
+++
        if implement && let Some(r) = None::<crate::error::Refusal> {
=== audit: every commit judged is held to a walk the commit-graph file gave
file: src/audit/auditor.rs
---
            walked.check(&commit)?;
+++
            let _ = walked;
=== audit: a commit-graph that puts a commit before its parent is refused
file: src/audit/walk.rs
---
                Some(p) if p < at => {}
+++
                Some(_) => {}
=== read summary: a file-system monitor's word is taken only for its own instance's token
file: src/store/summary/monitor.rs
---
        if since != instance || seq < w.reset || w.gone {
+++
        if seq < w.reset || w.gone {
=== read summary: every path the monitor names is looked at, not taken from the summary
file: src/store/summary/mod.rs
---
            if affected(p) || p.is_empty() {
+++
            if p.is_empty() {
EOF
)

parse_and_run() {
python3 - "$@" <<'PY'
import os, subprocess, sys, time
root, text, only = sys.argv[1], sys.argv[2], sys.argv[3:]
guards = []
for block in text.split("=== ")[1:]:
    what, rest = block.split("\n", 1)
    file_line, rest = rest.split("\n", 1)
    search, replace = rest.split("\n+++\n", 1)
    guards.append((what, file_line.removeprefix("file: "), search.removeprefix("---\n"), replace.rstrip("\n")))
if only == ["--list"]:
    for i, (what, f, _, _) in enumerate(guards, 1):
        print(f"{i:3}  {what}  ({f})")
    sys.exit(0)
picked = [i for i in range(1, len(guards) + 1) if not only or str(i) in only]
bad = []
for i in picked:
    what, f, search, replace = guards[i - 1]
    path = os.path.join(root, f)
    original = open(path).read()
    if original.count(search) != 1:
        print(f"{i:3}  STALE     {what}: its code is not found once in {f}; update benches/mutants.sh")
        bad.append(i)
        continue
    open(path, "w").write(original.replace(search, replace))
    t0 = time.time()
    try:
        build = subprocess.run(["cargo", "test", "--locked", "--all-features", "--no-run", "-q"],
                               cwd=root, capture_output=True, text=True)
        if build.returncode != 0:
            print(f"{i:3}  BUILD     {what}: the mutant does not compile; fix its replacement")
            bad.append(i)
            continue
        run = subprocess.run(["cargo", "test", "--locked", "--all-features", "-q", "--", "--test-threads=2"],
                             cwd=root, capture_output=True, text=True)
        # With -q, the failing tests are listed under "failures:", one per indented line.
        failed, listing = [], False
        for l in run.stdout.splitlines():
            if l == "failures:":
                listing = True
            elif listing and l.startswith("    ") and " " not in l.strip():
                failed.append(l.strip())
            elif listing and l.startswith("test result"):
                listing = False
        failed = sorted(set(failed))
        if not failed and "error[" in run.stderr:
            failed = ["(a test target failed to build)"]
        secs = time.time() - t0
        if run.returncode == 0:
            print(f"{i:3}  SURVIVED  {what}  ({secs:.0f} s)")
            bad.append(i)
        else:
            shown = ", ".join(failed[:2]) + (f" and {len(failed) - 2} more" if len(failed) > 2 else "")
            print(f"{i:3}  caught    {what}: {shown}  ({secs:.0f} s)")
    finally:
        open(path, "w").write(original)
    sys.stdout.flush()
print(f"\n{len(picked) - len(bad)} of {len(picked)} guard(s) caught by the suite"
      + (f"; not caught: {bad}" if bad else ""))
sys.exit(1 if bad else 0)
PY
}

if [[ ${1:-} == --list ]]; then
  parse_and_run "$ROOT" "$GUARDS" --list
  exit 0
fi

mkdir -p "$SCRATCH"
git worktree remove --force "$SCRATCH/src" >/dev/null 2>&1 || rm -rf "$SCRATCH/src"
git worktree add -q --detach "$SCRATCH/src" HEAD
trap 'git -C "$ROOT" worktree remove --force "$SCRATCH/src" >/dev/null 2>&1 || true' EXIT
export CARGO_TARGET_DIR=$SCRATCH/target
parse_and_run "$SCRATCH/src" "$GUARDS" "$@"
