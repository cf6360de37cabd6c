#!/usr/bin/env bash
# Runs the fuzz targets of vnic for SECONDS each (default 60) from the
# committed seed corpus; exits non-zero when a target crashed, printing
# where the crashing input was saved and how to replay it.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (default: every target)
#
# The build keeps debug assertions and overflow checks on (cargo fuzz
# -a, and [profile.release] in fuzz/Cargo.toml): the stack's
# debug_assert! invariants run, and an integer overflow is a crash.
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz --locked`
# when missing). On a stable toolchain RUSTC_BOOTSTRAP=1 lets rustc take
# the sanitizer flags cargo-fuzz passes. FUZZ_SANITIZER=none runs without
# AddressSanitizer (default: address). New inputs the fuzzer finds go to
# fuzz/work/TARGET (ignored by git); fuzz/corpus/TARGET is only read.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-60}
case $secs in
  '' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
shift || true
sanitizer=${FUZZ_SANITIZER:-address}
all=(frame stack offload http framing control config)
targets=("${@:-${all[@]}}")
# Longest input: a frame, a script, a TAP read of a 64 KiB segment with
# its virtio-net header, a client's stream past the 16 KiB head limit, a
# few request lines, a config file.
declare -A max_len=([frame]=2048 [stack]=4096 [offload]=65563 [http]=20000
  [framing]=20000 [control]=4096 [config]=8192)
declare -A dict=([http]=http [framing]=http [control]=control [config]=config)
for t in "${targets[@]}"; do
  [ -n "${max_len[$t]:-}" ] || { echo "run.sh: no target $t (targets: ${all[*]})" >&2; exit 2; }
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "run.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
flags=(-a --sanitizer "$sanitizer")

start=$SECONDS
cargo fuzz build "${flags[@]}"
echo "run.sh: built in $((SECONDS - start))s" >&2

failed=()
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  extra=()
  [ -n "${dict[$t]:-}" ] && extra+=("-dict=dict/${dict[$t]}.dict")
  echo "run.sh: fuzzing $t for ${secs}s" >&2
  # libFuzzer stops itself after max_total_time; the timeout only guards
  # against a run that hangs outside its control.
  if timeout --kill-after=30 "$((secs + 120))" \
    cargo fuzz run "${flags[@]}" "$t" "work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -max_len="${max_len[$t]}" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 ${extra[@]+"${extra[@]}"} >"work/$t.log" 2>&1; then
    tail -n 12 "work/$t.log" | grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' >&2 || true
  else
    status=$?
    failed+=("$t")
    tail -n 60 "work/$t.log" >&2
    artifact=$(ls -t "artifacts/$t"/* 2>/dev/null | head -n 1 || true)
    echo "run.sh: $t FAILED (status $status); log: fuzz/work/$t.log" >&2
    if [ -n "$artifact" ]; then
      echo "run.sh: crashing input: fuzz/$artifact" >&2
      echo "run.sh: replay with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $t $artifact" >&2
    fi
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "run.sh: crashed: ${failed[*]}" >&2
  exit 1
fi
echo "run.sh: ${targets[*]}: no crash in ${secs}s each ($((SECONDS - start))s in all)" >&2
