#!/usr/bin/env bash
# A/B of the DMA figures of the core group: `scripts/dma-ab.sh BASE_DIR PAIRS`, alternating BASE_DIR and this
# worktree, each `flock /work/bench.lock npx tsx bench/run.ts --only core --runs 3 --json`; prints each run's medians.
set -euo pipefail
base=$1; pairs=${2:-3}; here=$(cd "$(dirname "$0")/.." && pwd)
for ((i = 1; i <= pairs; i++)); do
  for side in "$base" "$here"; do
    (cd "$side" && flock /work/bench.lock npx tsx bench/run.ts --only core --runs 3 --json 2>/dev/null) |
      node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r={};for(const l of s.split("\n")){if(!l.trim())continue;const j=JSON.parse(l);if(j.name?.startsWith("dma-map-unmap-single"))r[j.name.replace("dma-map-unmap-single-8p","")||"reuse"]=`${j.value.toFixed(0)} (${j.spread.map(x=>x.toFixed(0)).join("-")})`;}console.log(process.argv[1].padEnd(16),JSON.stringify(r));})' "$(basename "$side")"
  done
done
