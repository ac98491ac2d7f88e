#!/usr/bin/env bash
# Runs the CUDA backend's tests and benchmark G1 on a GPU machine that has no Rust.
#   here (no GPU needed):  nn-cuda/gpu.sh build   -> target/gpu-bin/ (release, ~10 MB)
#   on the GPU machine:    nn-cuda/gpu.sh run     (with target/gpu-bin carried along)
# `run` puts the CUDA 13 libraries of the pip wheels (nvidia/cu13/lib) on LD_LIBRARY_PATH
# when python has them, then runs every test with NN_CUDA_REQUIRE=1 (no silent skips).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/gpu-bin
case "${1:-}" in
build)
  rm -rf "$BIN" && mkdir -p "$BIN"
  cargo test --release --features cuda --workspace --no-run --message-format=json 2>/dev/null \
    | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    exe = m.get("executable")
    name = m.get("target", {}).get("name", "")
    if exe and name in ("devices", "nn_cuda"):
        shutil.copy(exe, sys.argv[1] + "/" + name)
' "$BIN"
  cp "$(benches/bench_bin.sh bench_gpu --features cuda)" "$BIN/bench_gpu"
  ls -l "$BIN"
  ;;
run)
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv || true
  for d in $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null); do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
  done
  export NN_CUDA_REQUIRE=1 NN_NVRTC_REQUIRE=1
  "$BIN/nn_cuda" --test-threads=1 --include-ignored
  "$BIN/devices" --test-threads=4 --include-ignored
  NN_BENCH_STEPS=20 "$BIN/bench_gpu"
  ;;
*)
  echo "usage: $0 build|run" >&2
  exit 2
  ;;
esac
