#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run of under 8 minutes, results in one folder:
#   bash scripts/gpu_check.sh [OUT_DIR]        (default gpu-check/)
# 1. tests/test_device.py: one DiT evaluation on CUDA against the CPU, the fixtures'
#    reference runs on CUDA in fp32, bf16 close to fp32, and generations with
#    compile=True (fp32 and bf16);
# 2. benchmarks/dit_step.py --device cuda: the full-size DiT step at 1024 and 6144 latents,
#    longplay against diffusers at the same precision;
# 3. benchmarks/vae_decode.py --device cuda --speed-only: 10 s decodes, interleaved;
# 4. benchmarks/end_to_end.py --device cuda --open-small: the Open Small architecture at
#    full size against the reference networks, fp32, bf16 and bf16 compiled.
# Runs from the repository root with the machine's own python3 and PyTorch (CUDA build);
# on one H200 it took under 4 minutes (benchmarks/results/gpu/).
# Packages missing there can be given as wheels in .whl/ (scripts/gpu_wheels.sh makes
# them on a machine with the registry); longplay itself runs from src/.
set -uo pipefail
OUT=${1:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/longplay-site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/longplay-site"
fi
python3 - <<'PY' | tee "$OUT/environment.txt" || exit 1
import platform, torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name(0)}, Python {platform.python_version()}")
PY
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo "== $name" | tee -a "$OUT/summary.txt"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "   rc=$rc, $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
  [ "$rc" -eq 0 ] || status=1
}
step tests 150 python3 -m pytest -q -s -p no:cacheprovider tests/test_device.py
step dit_step 120 python3 benchmarks/dit_step.py --device cuda --latents 1024,6144 \
  --repeats 5 --out "$OUT/dit_step.md"
step vae_decode 60 python3 benchmarks/vae_decode.py --device cuda --speed-only --repeats 3 \
  --out "$OUT/vae_decode.md"
step end_to_end 150 python3 benchmarks/end_to_end.py --device cuda --open-small --durations \
  --repeats 3 --compile bf16 --out "$OUT/end_to_end.md"
echo "results in $OUT (status $status)"
exit $status
