#!/usr/bin/env bash
# Builds one benchmark (a `[[bench]]` target of the root Cargo.toml, bench profile) and
# prints the path of its executable, for runs that need the binary itself (under mpirun,
# valgrind or perf, or copied to another machine); `cargo bench --bench NAME -- ARGS`
# builds and runs it in one go.
#
#   BIN=$(benches/bench_bin.sh bench_distributed --features mpi)
set -euo pipefail
name=${1:?usage: benches/bench_bin.sh NAME [CARGO FLAGS...]}
shift
cd "$(dirname "$0")/.."
exe=$(cargo bench --quiet --no-run --message-format=json --bench "$name" "$@" \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  echo "benches/bench_bin.sh: cargo built no executable for bench target $name" >&2
  exit 1
fi
echo "$exe"
