#!/usr/bin/env bash
# Fuzz plumb's inputs: the host config, and a deploy repo (deploy.yaml, an
# overlay and a template) rendered through every built-in template.
#
#   fuzz/run.sh [SECONDS]     # per target, both targets at once (default 1800)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# New inputs that reach new code are added to fuzz/corpus/<target>/; a
# crash, a hang (-timeout) or memory above -rss_limit_mb stops the run and
# leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-1800}
cargo +nightly fuzz build --release
pids=()
for target in host_config deploy; do
    cargo +nightly fuzz run --release "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=65536 \
        -print_final_stats=1 > "fuzz-$target.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for target in host_config deploy; do
    echo "== $target"; grep -E "^stat::|Done|SUMMARY|crash|timeout|oom" "fuzz-$target.log" | tail -8
done
exit $status
