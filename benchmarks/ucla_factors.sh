#!/usr/bin/env bash
# NW-UCLA factor study (issue 16): what separates our linear top-1 from the paper's, one factor at a time.
# Each run pretrains in-process (benchmarks/small_protocol.py, no Ray) and prints pretrained vs random
# encoder under the reference probe and the fair probe (lr x standardisation chosen on validation).
# Resumable: a run whose output already holds its final table is skipped, so rerun after an interruption.
# Usage: benchmarks/ucla_factors.sh OUTDIR [SCALE]   (SCALE: small (default) | h256 | paper)
# Needs the stores:  ms2l data prepare nw-ucla ../shared/data/nw-ucla OUTDIR/ucla.arrow
#                    ms2l data prepare nw-ucla ../shared/data/nw-ucla OUTDIR/ucla-noalign.arrow --no-align
# Cost on an idle 2-core machine: small ≈ 2 min a run, h256 ≈ 10 min, paper ≈ 2 h; run nothing else beside it.
set -uo pipefail
out=${1:?usage: ucla_factors.sh OUTDIR [small|h256|paper]}
scale=${2:-small}
here=$(cd "$(dirname "$0")" && pwd)
case $scale in
  small) base=(--preset small) ;;
  h256) base=(--preset paper --set model.hidden_size=256 --set model.head_hidden=512 --set model.proj_dim=256
              --set pretrain.epochs=100 --set pretrain.step_size=70 --set data.max_frames=64) ;;
  paper) base=(--preset paper --set data.max_frames=64) ;;
  *) echo "unknown scale $scale" >&2; exit 2 ;;
esac
base+=(--set data.split=ucla --set log_every=1000)
run() {
  local name=$scale-$1; shift
  if grep -q "fair probe" "$out/$name.out" 2>/dev/null; then echo "skip $name (done)"; return; fi
  echo "== $name $(date -u +%T)"
  /usr/bin/time -f "wall %e s" python "$here/small_protocol.py" "${base[@]}" "$@" > "$out/$name.out" 2>&1
  tail -9 "$out/$name.out"
}
run base     --dataset "$out/ucla.arrow"
run noalign  --dataset "$out/ucla-noalign.arrow"
run padded   --dataset "$out/ucla.arrow" --set model.encoder_impl=padded
run b64      --dataset "$out/ucla.arrow" --set pretrain.batch_size=64
run T201     --dataset "$out/ucla.arrow" --set data.max_frames=201
run seed1    --dataset "$out/ucla.arrow" --seed 1
run seed2    --dataset "$out/ucla.arrow" --seed 2
