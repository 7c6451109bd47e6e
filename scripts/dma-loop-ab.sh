#!/usr/bin/env bash
# In-process A/B of the DMA loops: `scripts/dma-loop-ab.sh OTHER_ROOT [PROCESSES] [ROUNDS]` runs scripts/dma-loop.ts
# alternately on OTHER_ROOT and this checkout, PROCESSES times each, and prints per side the median over processes of
# each process's minimum CPU ns per pair (a process's JIT and heap layout vary more than its rounds do).
set -euo pipefail
other=$1; n=${2:-6}; rounds=${3:-9}; here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
for ((i = 0; i < n; i++)); do
  for side in other here; do
    root=$([ $side = other ] && echo "$other" || echo "$here")
    (cd "$here" && npx tsx scripts/dma-loop.ts --root "$root" --rounds "$rounds") >> "$tmp/$side"
  done
done
for side in other here; do
  for pat in reuse noreuse; do
    grep "^$pat:" "$tmp/$side" | sed -E 's/.*cpu min ([0-9]+).*/\1/' | sort -n | tr '\n' ' ' | awk -v s=$side -v p=$pat '{n=split($0,a," "); printf "%-6s %-8s median %s  all: %s\n", s, p, a[int((n+1)/2)], $0}'
  done
done
rm -rf "$tmp"
