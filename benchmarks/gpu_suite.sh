#!/usr/bin/env bash
# One device run, side by side: the ITE cost at the paper's sizes (B=256, ConvNet-3 width 128, CIFAR-10, ipc 1
# and 10; bench_ite.py) and IDC's Table 6 columns (CIFAR-10, ipc 10, factor 2, mse; bench_idc.py).
#   benchmarks/gpu_suite.sh DATA_ROOT PATCHED_IDC_COPY OUT_DIR
# DATA_ROOT holds cifar-10-batches-py (a per-class subset is fine: bilp subset);
# PATCHED_IDC_COPY is IDC with the whole series applied (bilp-apply, or apply.export_tree of the patched tree).
set -u
data=$1 idc=$2 out=$3
mkdir -p "$out"
timeout 75 python3 benchmarks/bench_ite.py --device cuda --data-root "$data" --ipc 1 10 --repeats 3 2>&1 \
  | tee "$out/ite.md"
timeout 140 python3 benchmarks/bench_idc.py --data "$data" --upstream "$idc" --rounds 2 --iters 10 --skip-naive \
  --skip-cifar-integrity -- -d cifar10 --ipc 10 -f 2 --n_data 500 --metric mse --lr_img 5e-3 2>&1 \
  | tee "$out/idc.md"
