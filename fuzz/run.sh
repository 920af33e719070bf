#!/usr/bin/env bash
# Fuzzes one target for a while on stable Rust, then merges what it found into the committed
# corpus (only inputs that add coverage). Usage: fuzz/run.sh <target> [seconds, default 600]
# Needs `cargo install cargo-fuzz`; RUSTC_BOOTSTRAP=1 lets stable accept its -Z flags.
# CORRAL_FUZZ_STRICT=1 also asserts the checks of targets::OPEN_BUGS.
set -euo pipefail
cd "$(dirname "$0")"
target=$1
seconds=${2:-600}
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "corpus-new/$target" "artifacts/$target" logs
dict=()
[[ -f dicts/$target.dict ]] && dict=(-dict="dicts/$target.dict")
# Fork mode with -ignore_crashes keeps fuzzing after a crash (saved under artifacts/).
nice -n 10 cargo fuzz run -O --debug-assertions "$target" "corpus-new/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -fork=1 -ignore_crashes=1 -print_final_stats=1 "${dict[@]}" 2>&1 | tee "logs/$target.log" | grep -E "^#|INFO: fuzzed|crash|deadly|Test unit|ERROR" | tail -20 || true
# Keep only what adds coverage to the committed corpus.
nice -n 10 cargo fuzz run -O --debug-assertions "$target" "corpus/$target" "corpus-new/$target" -- -merge=1 2>&1 | tail -2
