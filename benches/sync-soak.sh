#!/usr/bin/env bash
# The long version of the concurrency tests in tests/cli/sync.rs: 8 clones of one bare
# remote, each making STEPS random transitions with syncs in between, then KILLS runs that
# kill chg (SIGKILL) at a random moment during new, approve and sync. Every run checks that
# the store validates, git fsck passes, a rerun completes, nothing is lost or doubled, and
# that at the end every clone agrees and audit is clean.
#
#   benches/sync-soak.sh [STEPS] [KILLS]     (default 200 steps per person, 1000 kills)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-200}
kills=${2:-1000}
cargo build --release --quiet --tests
start=$(date +%s)
CHG_SOAK_STEPS=$steps CHG_SOAK_KILLS=$kills cargo test --release --quiet --test cli -- \
    --test-threads 1 sync::eight_people sync::a_hundred_kills
echo "soak: 8 people x $steps steps, $kills kills: $(( $(date +%s) - start )) s"
