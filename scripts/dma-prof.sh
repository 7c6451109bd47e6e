#!/usr/bin/env bash
# CPU profile of the DMA benchmark loops on tsc-compiled code (line numbers in the frames):
#   scripts/dma-prof.sh ROOT OUT [reuse|noreuse] [rounds]
# compiles ROOT's src into OUT/dist, runs scripts/dma-loop.ts's loop there under --cpu-prof and prints the top frames.
set -euo pipefail
root=$(cd "$1" && pwd); out=$2; mode=${3:-noreuse}; rounds=${4:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$out" && mkdir -p "$out"
(cd "$root" && npx tsc -p tsconfig.json --outDir "$out/dist" --declaration false)
ln -s "$root/node_modules" "$out/node_modules"
sed -e 's/\.ts`/.js`/g' "$here/scripts/dma-loop.ts" > "$out/loop.ts"
"$here/node_modules/.bin/esbuild" "$out/loop.ts" --format=esm --outfile="$out/loop.mjs" --log-level=warning
node ${NODE_FLAGS:-} --cpu-prof --cpu-prof-dir="$out/prof" "$out/loop.mjs" "$mode" --root "$out/dist" --rounds "$rounds"
(cd "$here" && npx tsx scripts/profile-top.ts "$out/prof" --top 30)
