#!/usr/bin/env bash
# Runs every fuzz target of vnic for SECONDS each (default 60) from the
# committed seed corpus; exits non-zero when a target crashed, printing
# where the crashing input was saved and how to replay it.
#
#   fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz --locked`
# when missing). On a stable toolchain RUSTC_BOOTSTRAP=1 lets rustc take
# the sanitizer flags cargo-fuzz passes. FUZZ_SANITIZER=none runs without
# AddressSanitizer (default: address). New inputs the fuzzer finds go to
# fuzz/work/TARGET (ignored by git); fuzz/corpus/TARGET is only read.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-60}
case $secs in
  '' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS]" >&2; exit 2 ;;
esac
sanitizer=${FUZZ_SANITIZER:-address}
targets=(frame stack)
declare -A max_len=([frame]=2048 [stack]=4096)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "run.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

cargo fuzz build -O --sanitizer "$sanitizer"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  echo "run.sh: fuzzing $t for ${secs}s" >&2
  # libFuzzer stops itself after max_total_time; the timeout only guards
  # against a run that hangs outside its control.
  if timeout --kill-after=30 "$((secs + 120))" \
    cargo fuzz run -O --sanitizer "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -max_len="${max_len[$t]}" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 >"work/$t.log" 2>&1; then
    tail -n 12 "work/$t.log" | grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' >&2 || true
  else
    status=$?
    failed+=("$t")
    tail -n 60 "work/$t.log" >&2
    artifact=$(ls -t "artifacts/$t"/* 2>/dev/null | head -n 1 || true)
    echo "run.sh: $t FAILED (status $status); log: fuzz/work/$t.log" >&2
    if [ -n "$artifact" ]; then
      echo "run.sh: crashing input: fuzz/$artifact" >&2
      echo "run.sh: replay with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O --sanitizer $sanitizer $t $artifact" >&2
    fi
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "run.sh: crashed: ${failed[*]}" >&2
  exit 1
fi
echo "run.sh: ${targets[*]}: no crash in ${secs}s each" >&2
