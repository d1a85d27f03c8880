#!/usr/bin/env bash
# Profiles the authenticated proxy path (see bench/profile.py): instructions per
# request under callgrind, and a perf flamegraph where perf works.
#
#   bench/profile.sh && bench/report
#
# Needs nginx, wrk, openssl, python3 and valgrind; the flamegraph also needs perf
# (linux-perf) and inferno (`cargo install inferno`). Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bins --examples
export BENCH_BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
exec python3 bench/profile.py "$@"
