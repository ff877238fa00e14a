#!/usr/bin/env bash
# All of weir's checks: formatting, clippy with warnings as errors, unit and end-to-end tests
# (real weir processes, ffmpeg publishing and playing on loopback), benchmarks compiled, and
# the cargo-fuzz targets run for a minute each.
set -euo pipefail
cd "$(dirname "$0")/.."
# One full build: incremental compilation's caches would only add disk (about 1 GB) to it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The free disk before and after the build, so that a run that fills it says so.
disk() { echo "disk ($1): $(df -h --output=avail . | tail -n 1 | tr -d ' ') free"; }
disk start
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
cargo test --workspace --doc
disk "after the tests"
# Fuzz every parser of untrusted input for a bounded time (WEIR_FUZZ_SECONDS per target,
# two targets at a time): a crash fails the run.
scripts/fuzz.sh "${WEIR_FUZZ_SECONDS:-60}"
