#!/usr/bin/env bash
# One device call per run of bench_overhead.py's paper preset (Table 6: IDC CIFAR-10 ipc 10 factor 2; DC and DM
# CIFAR-10 ipc 10; IDM's published CIFAR-10 ipc 10): the upstream's setup (1-2 min), one warm-up unit per variant,
# then 240 s of timed rounds; the timeout ends it within an 8-minute call.
#   benchmarks/gpu_suite.sh RUN TREE OUT_DIR [DATA_ROOT]
# RUN: dc, dm, idc or idm. TREE: that upstream with the adapter's whole series applied (dc and dm share one), e.g.
#   python -c "from bilp_plugin.tools import apply; apply.export_patched(apply.Manifest.load('adapters/idc'), 'up/idc')"
# DATA_ROOT holds cifar-10-batches-py; without it, random images in the CIFAR-10 layout (timings do not depend on
# pixel values).
set -u
run=$1 tree=$2 out=$3 data=${4:-}
mkdir -p "$out"
source=(--random-data)
[ -n "$data" ] && source=(--data "$data")
timeout 470 python3 benchmarks/bench_overhead.py --preset paper --run "$run" --tree "$tree" "${source[@]}" 2>&1 \
  | tee "$out/$run.md"
