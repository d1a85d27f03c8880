#!/usr/bin/env bash
# samlgate's end-to-end benchmark against nginx (see BENCHMARKS.md and bench/run.py).
#
#   bench/run.sh            # full run: 10 s per wrk run, 3 repeats, median; writes bench/results.json
#   bench/run.sh --smoke    # 1 s runs, 1 repeat: checks every component works (CI; about a minute)
#   bench/run.sh && bench/report   # regenerate BENCHMARKS.md
#
# Needs nginx, wrk, openssl and python3 (scripts/test installs them) and builds the
# release binaries it runs (samlgate, examples/mint_session, bench/mint_responses.rs).
# Further options (--duration, --repeats, --login-responses, --out, --keep) go to
# bench/run.py. Nothing here asserts a timing: it fails only when something does not work.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for program in nginx wrk openssl python3; do
  command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] || missing+=("$program")
done
if ((${#missing[@]})); then
  echo "bench/run.sh: missing ${missing[*]} (scripts/test installs them)" >&2
  exit 1
fi

# 10,000 idle keep-alive connections need that many descriptors in samlgate and in
# the client, plus some: raise the soft limit as far as the hard limit allows.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
  ulimit -n 65536
else
  ulimit -n "$hard"
fi

# The smoke only proves every part still works: the debug build the test suite has
# already made is enough. Numbers come from release builds only.
target="${CARGO_TARGET_DIR:-target}"
case " $* " in
  *" --smoke "*)
    cargo build --locked --bins --examples
    export BENCH_BIN_DIR="$target/debug"
    ;;
  *)
    cargo build --release --locked --bins --examples
    export BENCH_BIN_DIR="$target/release"
    ;;
esac

exec python3 bench/run.py "$@"
