#!/usr/bin/env bash
# All of weir's checks: formatting, clippy with warnings as errors, unit and end-to-end tests
# (real weir processes, ffmpeg publishing and playing on loopback), benchmarks compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
cargo test --workspace --doc
