#!/usr/bin/env bash
# One-shot check of Vision Big Bird on a lent GPU machine (python3 3.12, torch 2.11 + CUDA, transformers 5.17, no
# network) in at most 8 minutes, each stage under its own `timeout` (docs/benchmarks.md, "The GPU check"):
#   scripts/device_check.sh --prepare               # here (network): wheels + Fashion-MNIST into .device_wheels/
#   scripts/device_check.sh                         # on the GPU machine, with .device_wheels/ copied beside the repo
#   scripts/device_check.sh --device cpu --quick    # here: every line end to end on the CPU, a few minutes
# Stages: install the carried wheels the machine needs into .device_site/, (a) correctness, (b) benchmark, (c) a short
# training. $OUT (default ./device_out) receives device_check.log (every line printed; each stage's command, budget,
# exit status, seconds), correctness.json (a), benchmark_results.{json,md} and raw_timings.json (b: VBB-T, Swin-T,
# ConvNeXt-T, ViT-S/16), pvtv2/benchmark_results.{json,md} (b: PVTv2-b2 next to Swin-T) and training.json (c).
# Environment: PYTHON (default python3), PIP (--prepare only, default pip), DEVICE_WHEELS (default .device_wheels),
# DEVICE_CHECK_FORCE_INSTALL=1 installs every carried wheel even where the machine's version would do.
set -u -o pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda QUICK="" PREPARE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) PREPARE=1 ;;
    --device) DEVICE="${2:?--device needs cpu or cuda}"; shift ;;
    --quick) QUICK=--quick ;;
    *) echo "device_check.sh: unknown argument '$1' (use --prepare, --device cpu|cuda, --quick)" >&2; exit 2 ;;
  esac
  shift
done
[[ $DEVICE =~ ^(cpu|cuda)$ ]] || { echo "device_check.sh: --device '$DEVICE': use cpu or cuda" >&2; exit 2; }
WHEELS="${DEVICE_WHEELS:-.device_wheels}" PYTHON="${PYTHON:-python3}"

if [ -n "$PREPARE" ]; then
  # transformers 5.24 needs huggingface_hub>=1.31 where 5.17 asked for >=1.5; hub 1.33 needs hf-xet>=1.6 and
  # click>=8.4.2. Every other requirement of 5.24 (tokenizers, safetensors, regex, ...) is the same as 5.17's.
  set -e
  mkdir -p "$WHEELS/fashion-mnist"
  "${PIP:-pip}" download --quiet --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --no-deps -d "$WHEELS" transformers==5.24.0 huggingface_hub==1.33.0 hf_xet==1.8.0 click==8.5.1
  cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$WHEELS/fashion-mnist/"
  ls -l "$WHEELS" "$WHEELS/fashion-mnist"
  bytes=$(($(du -sb "$WHEELS" | cut -f1) + $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)))
  echo "$WHEELS and the working tree: $((bytes >> 20)) MiB of the 64 the machine accepts"
  [ "$bytes" -lt $((64 << 20)) ] || { echo "over the 64 MiB the machine accepts" >&2; exit 1; }
  exit 0
fi

mkdir -p "${OUT:=./device_out}/pvtv2"
exec > >(tee -a "$OUT/device_check.log") 2>&1
TEE_PID=$! START=$SECONDS FAILED=""
if [ -n "$QUICK" ]; then
  # the CPU smoke run checks that every line runs, on a machine however busy: its budgets only stop a hang
  TOTAL=3600 BUDGETS=(1200 1200 1200 1200) TRAIN_SECONDS=3   # seconds: all stages, then (a), (b), (b) PVTv2, (c)
  BENCH=(--quick --threads 1 --resolutions 224 256 --batch_size 2 --train_batch_size 2)
  PVT=(--quick --threads 1 --resolutions 224 --batch_size 1 --train_batch_size 1)
else
  TOTAL=470 BUDGETS=(90 180 60 150) TRAIN_SECONDS="" BENCH=() PVT=(--resolutions 224 512 1024)  # 8 minutes at most
fi

stage() {  # stage NAME BUDGET_SECONDS COMMAND...: run under timeout, cut to what is left of TOTAL
  local name=$1 budget=$2 left=$((START + TOTAL - SECONDS)) t0=$SECONDS rc
  shift 2
  [ "$budget" -gt "$left" ] && budget=$left
  if [ "$budget" -lt 15 ]; then
    echo "== $name: skipped, ${left}s left"; FAILED="$FAILED $name(skipped)"; return 0
  fi
  echo "== $name: budget ${budget}s: $*"
  timeout --kill-after=10 "$budget" "$@"
  rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0))s$([ $rc = 124 ] && echo ' (stopped by its timeout)')"
  [ $rc = 0 ] || FAILED="$FAILED $name(exit $rc)"
}

echo "== device_check.sh --device $DEVICE $QUICK at $(date -u +%FT%TZ), repo $(git rev-parse --short HEAD 2>/dev/null)"
[ "$DEVICE" = cuda ] && { timeout 30 nvidia-smi || echo "nvidia-smi: not available"; }
export PYTHONPATH="$PWD/src"
if ls "$WHEELS"/transformers-*.whl >/dev/null 2>&1; then
  stage install 90 "$PYTHON" scripts/device_check.py install --wheels "$WHEELS" --target .device_site \
    ${DEVICE_CHECK_FORCE_INSTALL:+--force}
  export PYTHONPATH="$PWD/.device_site:$PWD/src"
else
  echo "== install: no transformers wheel in $WHEELS, using the machine's packages"
fi
VERSIONS="import sys, torch, transformers as t, huggingface_hub as hub, vision_bigbird_hf; print('python', \
sys.version.split()[0], '| torch', torch.__version__, torch.version.cuda, torch.cuda.is_available() and \
torch.cuda.get_device_name(0), '| transformers', t.__version__, t.__file__, '| huggingface_hub', hub.__version__)"
if ! timeout 120 "$PYTHON" -c "$VERSIONS"; then
  echo "== the carried packages do not import: falling back to the machine's own transformers"
  export PYTHONPATH="$PWD/src"
  timeout 120 "$PYTHON" -c "$VERSIONS" || echo "== vision_bigbird_hf does not import: the stages below will fail"
fi

DATA="$WHEELS/fashion-mnist"
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || DATA=/usr/share/datasets/fashion-mnist
stage "(a) correctness" "${BUDGETS[0]}" "$PYTHON" scripts/device_check.py correctness --device "$DEVICE" $QUICK \
  --output "$OUT/correctness.json"
stage "(b) benchmark" "${BUDGETS[1]}" "$PYTHON" scripts/benchmark.py --device "$DEVICE" "${BENCH[@]}" \
  --models VBB-T Swin-T ConvNeXt-T ViT-S/16 --output_dir "$OUT" --raw_json "$OUT/raw_timings.json"
stage "(b) benchmark PVTv2-b2" "${BUDGETS[2]}" "$PYTHON" scripts/benchmark.py --device "$DEVICE" "${PVT[@]}" \
  --models Swin-T PVTv2-b2 --output_dir "$OUT/pvtv2" --raw_json "${TMPDIR:-/tmp}/device_check_pvtv2_raw.json"
# (c): five models share what is left, minus about 40 s for data loading and evaluation; at most 20 s each
EACH=${TRAIN_SECONDS:-$(((START + TOTAL - SECONDS - 40) / 5))}
stage "(c) training" $((EACH < 3 ? 0 : BUDGETS[3])) "$PYTHON" scripts/device_check.py train --device "$DEVICE" $QUICK \
  --data "$DATA" --seconds $((EACH < 20 ? EACH : 20)) --output "$OUT/training.json"

echo "== done in $((SECONDS - START))s; files in $OUT:"
ls -l "$OUT" "$OUT/pvtv2"
if [ -n "$FAILED" ]; then echo "== not clean:$FAILED"; else echo "== every stage exited 0"; fi
exec >&- 2>&-
wait "$TEE_PID"   # the log is complete before the machine collects $OUT
[ -z "$FAILED" ]
