#!/usr/bin/env bash
# Fuzz smoke test (docs/fuzzing.md): builds every cargo-fuzz target under
# fuzz/ and runs each for FUZZ_SECONDS (default 20) from the committed seed
# corpus; fails on the first crash, with the crash report and the input
# libFuzzer saved under fuzz/artifacts/<target>/.
#
# Needs the nightly toolchain (installed with rustup when missing) and
# cargo-fuzz (installed when missing). What the runs discover goes to a
# scratch directory, so the committed corpus stays as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
started=$SECONDS
say() { echo "fuzz-smoke: $*" >&2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
    say "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
say "tools ready after $((SECONDS - started))s"

# -a: debug assertions and overflow checks, as the long runs use.
cargo +nightly fuzz build -a
say "targets built after $((SECONDS - started))s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in $(cargo +nightly fuzz list); do
    mkdir -p "$scratch/$target"
    dict=()
    [[ -f fuzz/dict/$target.dict ]] && dict=("-dict=fuzz/dict/$target.dict")
    log="$scratch/$target.log"
    if cargo +nightly fuzz run -a "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" >"$log" 2>&1; then
        # The last status line: executions, coverage, corpus.
        say "$target: $(grep -E '^#[0-9]+' "$log" | tail -n 1)"
    else
        say "$target FAILED; the end of its log:"
        tail -n 60 "$log" >&2
        failed+=("$target")
    fi
done
say "done in $((SECONDS - started))s"
if ((${#failed[@]})); then
    say "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
