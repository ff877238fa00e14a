#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for a bounded time: the parsers of untrusted input
# (RTMP chunks + AMF0 + FLV, FLV tags and files, avcC/hvcC/av1C/AudioSpecificConfig,
# MPEG-TS, request paths, LL-HLS delivery directives), each from the committed seed corpus
# fuzz/corpus/TARGET. Two targets at a time (one per core). A crash fails the run and
# prints the input that caused it (hex) and the command to reproduce it; turn each into a
# unit test of the parser it names, then fix the parser.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]
# Needs the nightly toolchain (rustup) and cargo-fuzz (installed from crates.io if missing).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
rustup run nightly rustc --version >/dev/null 2>&1 || {
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build -O
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {
  local t=$1
  mkdir -p "$work/$t/new" "$work/$t/artifacts"
  # New inputs go to the scratch corpus; the committed one is read only.
  if cargo +nightly fuzz run -O "$t" "$work/$t/new" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 >"$work/$t/log" 2>&1; then
    echo "fuzz $t: $(grep -m1 -o 'Done [0-9]* runs in [0-9]* second(s)' "$work/$t/log"), no crash"
  else
    echo "fuzz $t: FAILED" >&2
    # The panic or sanitizer report, and the stack frames outside the standard library.
    grep -E -m3 'panicked at|==ERROR|SUMMARY' "$work/$t/log" >&2 || tail -n 20 "$work/$t/log" >&2
    grep -E '^ +#[0-9]+ .* in ' "$work/$t/log" | grep -v -E '/rustc/|libfuzzer|compiler-rt|libc' | head -n 25 >&2 || true
    for a in "$work/$t/artifacts"/*; do
      [ -e "$a" ] || continue
      echo "input ($(basename "$a")): $(od -An -v -tx1 "$a" | tr -d ' \n' | head -c 2000)" >&2
      echo "reproduce: save it as fuzz/crash and run: cd fuzz && cargo +nightly fuzz run -O $t crash" >&2
    done
    return 1
  fi
}
failed=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  pids=()
  for t in "${targets[@]:i:2}"; do
    run "$t" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
done
exit $failed
