#!/usr/bin/env bash
# The GPU check of issue #25, for a lent machine with CUDA (the H200 of the device tool: Python 3.12 and
# torch 2.11 there, but no pydantic, onnx2torch or soundfile). One run prints:
#   1. benchmarks/device.py: each stage's wall time on the CPU and on CUDA, side by side, with the ratio;
#   2. benchmarks/batched_attackers.py: one training step of the folds' attackers, stacked against one by one;
#   3. the demo audit (`ser-audit audit zoo:cnn4`: leakage and robustness in one report) with --device cuda
#      and with --device cpu, each on its own fresh embedding store: wall times, the verdicts side by side,
#      and the largest difference between matching rows (leakage L, robustness UAR).
# The audits are --quick (a default audit takes many minutes on a CPU, and the device time is 15 minutes
# in all); GPU_CHECK_DEFAULT_AUDIT=1 runs the default settings instead.
#
# Here, first, with the project's virtual environment active (writes .whl/, which git must ignore):
#   grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
#   bash ../shared/tools/gpu-bundle.sh
# Then, through the device tool, from the repository root, carrying .whl:
#   bash benchmarks/gpu_check.sh .whl
# The wheels supply the dependencies and the entry points (build them from this same checkout); the code
# itself runs from the working tree that travelled, so uncommitted changes are what gets measured.
# Outputs (device.txt, the reports, gpu-check.txt) go to $OUT where the tool sets it, else /tmp/gpu-check.
set -euo pipefail

wheels=${1:-.whl}
out=${OUT:-/tmp/gpu-check}
root=$(pwd)
mkdir -p "$out"
if ! compgen -G "$wheels/*.whl" >/dev/null; then
  echo "no wheels in $wheels: build them with ../shared/tools/gpu-bundle.sh and carry the folder" >&2
  exit 2
fi

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl
export PYTHONPATH="$root:$root/plugins:/tmp/site" PYTHONUNBUFFERED=1
export SER_AUDIT_CACHE=/tmp/ser-audit-cache
mkdir -p "$SER_AUDIT_CACHE"

log() { echo "$@" | tee -a "$out/gpu-check.txt"; }
: >"$out/gpu-check.txt"
log "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$out/gpu-check.txt" || true
python3 -c "import os, torch, ser_audit; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
'| cores', len(os.sched_getaffinity(0)), '| ser_audit from', ser_audit.__file__)" | tee -a "$out/gpu-check.txt"
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device here')"

log "== stages, cpu against cuda (benchmarks/device.py; trains zoo:cnn4 into the cache first, untimed)"
started=$(date +%s)
python3 benchmarks/device.py 2>&1 | tee "$out/device.txt"
log "device.py: $(($(date +%s) - started)) s in all"

log "== batched attackers: F folds' same-architecture attackers one after another against stacked (torch.func)"
python3 benchmarks/batched_attackers.py 2>&1 | tee -a "$out/gpu-check.txt"

quick=(--quick)
if [[ ${GPU_CHECK_DEFAULT_AUDIT:-0} == 1 ]]; then
  quick=()
fi
log "== demo audit: ser-audit audit zoo:cnn4 ${quick[*]} on cuda, then on cpu"
for device in cuda cpu; do
  cache="/tmp/audit-cache-$device"
  rm -rf "$cache"
  mkdir -p "$cache"
  ln -s "$SER_AUDIT_CACHE/zoo" "$cache/zoo"
  ln -s "$SER_AUDIT_CACHE/corpora" "$cache/corpora"
  started=$(date +%s.%N)
  status=0
  python3 -m ser_audit audit zoo:cnn4 "${quick[@]}" --device "$device" --cache-dir "$cache" \
    --out "$out/report-$device.json" --format json --quiet || status=$?
  seconds=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)")
  log "audit --device $device: $seconds s, exit $status (0 pass, 1 a gate failed, 2 usage, 3 internal)"
  if ((status > 1)); then
    exit "$status"
  fi
done

python3 - "$out/report-cuda.json" "$out/report-cpu.json" <<'PYTHON' | tee -a "$out/gpu-check.txt"
"""The two reports side by side: verdicts per layer, scores, and the largest difference between matching rows."""
import json
import sys

cuda, cpu = (json.load(open(path)) for path in sys.argv[1:3])


def verdicts(report):
    verdict = (report.get("leakage") or {}).get("verdict") or {}
    return verdict.get("verdict"), {layer["layer"]: layer for layer in verdict.get("layers", [])}


def leakage_rows(report):
    rows = (report.get("leakage") or {}).get("results", [])
    return {(r["layer"], r["scenario"], r["attacker_kind"], r["attacker_design"], r["training_data"]):
            r["balanced_accuracy"] for r in rows}


def robustness_rows(report):
    rows = (report.get("robustness") or {}).get("results", [])
    return {(r["method"], r["eps"]): r["uar"] for r in rows}


def largest(name, on_cuda, on_cpu):
    common = sorted(set(on_cuda) & set(on_cpu), key=str)
    only = len(set(on_cuda) ^ set(on_cpu))
    if not common:
        print(f"{name}: no matching rows ({only} on one side only)")
        return
    key = max(common, key=lambda k: abs(on_cuda[k] - on_cpu[k]))
    print(f"{name}: {len(common)} matching rows, {only} on one side only; largest |cuda - cpu| = "
          f"{abs(on_cuda[key] - on_cpu[key]):.4f} at {' / '.join(map(str, key))} "
          f"(cuda {on_cuda[key]:.4f}, cpu {on_cpu[key]:.4f})")


(model_cuda, layers_cuda), (model_cpu, layers_cpu) = verdicts(cuda), verdicts(cpu)
print(f"\nmodel verdict: cuda {model_cuda}, cpu {model_cpu}{'' if model_cuda == model_cpu else '  <-- DIFFERS'}")
print("\n| layer | cuda verdict | cpu verdict | cuda L [interval] | cpu L [interval] |\n|---|---|---|---|---|")
for layer in dict.fromkeys([*layers_cuda, *layers_cpu]):
    a, b = layers_cuda.get(layer, {}), layers_cpu.get(layer, {})

    def cell(v):
        return f"{v['balanced_accuracy']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" if v else "-"

    flag = "" if a.get("verdict") == b.get("verdict") else " (differs)"
    print(f"| {layer} | {a.get('verdict', '-')}{flag} | {b.get('verdict', '-')} | {cell(a)} | {cell(b)} |")
for score in ("privacy", "robustness", "grade"):
    print(f"score {score}: cuda {cuda['scores'].get(score)}, cpu {cpu['scores'].get(score)}")
print()
largest("leakage rows (L)", leakage_rows(cuda), leakage_rows(cpu))
largest("robustness rows (UAR)", robustness_rows(cuda), robustness_rows(cpu))
PYTHON
log "outputs in $out"
