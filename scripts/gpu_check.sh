#!/usr/bin/env bash
# GPU check of jpq on a machine with CUDA, in under 8 minutes (each part has its own time limit):
#   1. the search-step benchmark on cuda (fused and eager rows, 8-bit and {2,4,8} activations),
#   2. a smoke search of every dataset on generated data on cuda (digits, CIFAR-10, Speech Commands,
#      Tiny ImageNet) with the fused step,
#   3. a 2-job joblib sweep that must land on two distinct GPUs (when the machine has two or more).
# Usage: bash scripts/gpu_check.sh [OUT_DIR]     (run from the repository root; OUT_DIR default gpu_check)
set -uo pipefail
PY=${PYTHON:-python}
OUT=${1:-gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONWARNINGS=ignore HYDRA_FULL_ERROR=1
status=0
step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }
check() { if [ "$1" -ne 0 ]; then echo "FAILED ($1): $2"; status=1; else echo "ok: $2"; fi; }

step "environment"
$PY - <<'PYEOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    print(f"  cuda:{i}", torch.cuda.get_device_name(i))
PYEOF
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -lt 1 ]; then echo "no CUDA device: nothing to check"; exit 1; fi

step "1. search-step benchmark on cuda"
timeout 150 $PY scripts/bench_search_step.py --device cuda --steps 30 --costs size,ne16 --step both --json \
  > "$OUT/bench_cuda.txt" 2>&1
check $? "bench_search_step --device cuda"
cat "$OUT/bench_cuda.txt"

step "2. smoke search of every dataset on generated data, on cuda"
DATA="$OUT/data"
timeout 60 $PY scripts/synth_data.py cifar10 "$DATA" --scale 0.01 > /dev/null 2>&1
check $? "synthetic cifar10"
timeout 90 $PY scripts/synth_data.py gsc "$DATA" --scale 0.002 > /dev/null 2>&1
check $? "synthetic gsc"
timeout 60 $PY scripts/synth_data.py tiny_imagenet "$DATA" --scale 0.01 > /dev/null 2>&1
check $? "synthetic tiny_imagenet"
SMOKE=(trainer=smoke trainer.search_step=fused progress=false device=cuda "data_dir=$DATA" "cache_dir=$OUT/cache")
for ds in digits cifar10 gsc tiny_imagenet; do
  extra=()
  [ "$ds" = tiny_imagenet ] && extra=(dataset.val_size=40)
  [ "$ds" = cifar10 ] && extra=(dataset.val_size=40)
  timeout 120 $PY -m jpq.cli search dataset=$ds "${SMOKE[@]}" "${extra[@]}" "hydra.run.dir=$OUT/run_$ds" \
    > "$OUT/search_$ds.log" 2>&1
  rc=$?
  grep -h "threads:" "$OUT/search_$ds.log" | head -1
  check $rc "jpq search dataset=$ds on cuda"
  [ $rc -ne 0 ] && tail -20 "$OUT/search_$ds.log"
done

step "3. a 2-job sweep on two GPUs"
if [ "$NGPU" -ge 2 ]; then
  timeout 150 $PY -m jpq.cli search -m strength=0.5,2 trainer=smoke progress=false device=cuda \
    hydra/launcher=joblib hydra.launcher.n_jobs=2 "cache_dir=$OUT/cache_sweep" "hydra.sweep.dir=$OUT/sweep" \
    > "$OUT/sweep.log" 2>&1
  check $? "joblib sweep"
  grep -ho "device: cuda:[0-9]*" "$OUT/sweep.log" | sort | uniq -c
  n=$(grep -ho "device: cuda:[0-9]*" "$OUT/sweep.log" | sort -u | wc -l)
  [ "$n" -eq 2 ]; check $? "the two jobs ran on two distinct GPUs"
else
  echo "one GPU: skipped"
fi
echo; echo "gpu_check: $([ $status -eq 0 ] && echo all ok || echo FAILURES)"
exit $status
