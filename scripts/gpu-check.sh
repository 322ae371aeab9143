#!/usr/bin/env bash
# The webgpu backend on a machine with a real GPU: runs the numerical suite (test/runtime-ops.test.ts,
# test/e2e/webgpu.test.ts) on webgpu and, for comparison, on wasm and tensorflow (where it loads), then
# `npm run bench:runtime` (training steps of the quickstart and the 7.25M reference LM on every backend
# that loads, webgpu with its adapter named beside each figure, all in the same run), and prints the
# figures side by side.
#
#   scripts/gpu-check.sh                   refuses a software adapter (exit 2): it is for real GPUs
#   scripts/gpu-check.sh --allow-software  rehearses it on lavapipe / llvmpipe
#   scripts/gpu-check.sh --pack [DIR]      on a machine with Node and node_modules: writes the bundle below
#
# Carrying it to a GPU machine without Node or network (64 MiB at most):
#   Here (npm ci and npm run build done):  scripts/gpu-check.sh --pack   (default DIR: tmp/gpu-carry,
#   ignored by git) writes, measured on Node 20.20 / linux-x64, gzip -9 (xz would save 16 MiB, but a
#   bare Debian has no xz and no python3; gzip is everywhere):
#     node.gz               the Node binary                   34.0 MiB (98 MB; needs glibc and libstdc++)
#     node_modules.tar.gz   production dependencies + mocha   11.9 MiB: npm ci --omit=dev --omit=optional,
#                           then pruned: dawn.node for linux-x64 only, each @tensorflow package reduced to
#                           its Node bundle ("main") and .wasm files, no .map / .d.ts / docs (70 MB)
#     dist.tar.gz           the compiled JavaScript            0.4 MiB
#     lib/libvulkan.so.1    the Vulkan loader (Debian libvulkan1), 0.4 MiB, for a machine with only the
#                           driver; 46.7 MiB in all
#   There: copy the repository's tracked files and tmp/gpu-carry, then run this script; it unpacks what
#   is missing, puts lib/ on LD_LIBRARY_PATH, and when the NVIDIA driver's
#   Vulkan ICD manifest is missing but libGLX_nvidia.so.0 is present, writes one and sets
#   VK_ICD_FILENAMES. A container started with NVIDIA_DRIVER_CAPABILITIES without `graphics` has no
#   libGLX_nvidia.so.0, hence no Vulkan: the probe then says so and the script stops.
set -euo pipefail
cd "$(dirname "$0")/.."

ALLOW_SOFTWARE=0
case "${1:-}" in
  --allow-software) ALLOW_SOFTWARE=1 ;;
  --pack)
    out="${2:-tmp/gpu-carry}"
    rm -rf "$out" && mkdir -p "$out/lib"
    [ -f dist/runtime/backend/webgpu.js ] || { echo "gpu-check: build first (npm run build)" >&2; exit 1; }
    stage="$(mktemp -d)"
    trap 'rm -rf "$stage"' EXIT
    cp package.json package-lock.json "$stage/"
    mocha_version="$(node -p "require('./node_modules/mocha/package.json').version")"
    (cd "$stage" && npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund >/dev/null \
      && npm install --no-save --ignore-scripts --no-audit --no-fund --omit=optional "mocha@$mocha_version" >/dev/null)
    nm="$stage/node_modules"
    rm -rf "$nm"/webgpu/dist/{darwin-universal,linux-arm64,win32-*} "$nm/webgpu/build" "$nm"/{typescript,@lenml,vscode-tmgrammar-test,vscode-oniguruma,vscode-textmate,fast-check} "$nm/@tensorflow/tfjs-node-gpu"
    for p in "$nm"/@tensorflow/*; do
      main="$(node -p "require('$p/package.json').main")"
      find "$p" -type f ! -name package.json ! -path "$p/$main" ! -name '*.wasm' -delete
    done
    find "$nm" \( -name '*.map' -o -name '*.d.ts' -o -name '*.md' \) -type f -delete
    find "$nm" -type d -empty -delete
    tar -C "$stage" -cf - node_modules | gzip -9 > "$out/node_modules.tar.gz"
    tar -cf - dist | gzip -9 > "$out/dist.tar.gz"
    gzip -9 -c "$(command -v node)" > "$out/node.gz"
    for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
      if [ -e "$d/libvulkan.so.1" ]; then cp -L "$d/libvulkan.so.1" "$out/lib/"; break; fi
    done
    du -b "$out"/* "$out"/lib/* | awk '{ printf "  %-40s %6.1f MiB\n", $2, $1 / 1048576; t += $1 } END { printf "  %-40s %6.1f MiB\n", "total", t / 1048576 }'
    exit 0 ;;
  "") ;;
  *) echo "usage: scripts/gpu-check.sh [--allow-software | --pack [DIR]]" >&2; exit 2 ;;
esac

# ---- unpack a carried bundle where Node / node_modules / dist are missing ----------------------------
CARRY=tmp/gpu-carry
NODE="$(command -v node || true)"
if [ -d "$CARRY" ]; then
  if [ -z "$NODE" ] && [ -f "$CARRY/node.gz" ]; then
    mkdir -p "$CARRY/bin" && gzip -dc "$CARRY/node.gz" > "$CARRY/bin/node" && chmod +x "$CARRY/bin/node"
    NODE="$PWD/$CARRY/bin/node"
  fi
  for t in node_modules dist; do
    if [ ! -d "$t" ] && [ -f "$CARRY/$t.tar.gz" ]; then tar -xzf "$CARRY/$t.tar.gz"; fi
  done
  [ -d "$CARRY/lib" ] && export LD_LIBRARY_PATH="$PWD/$CARRY/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
[ -n "$NODE" ] || { echo "gpu-check: no node here and no $CARRY/node.gz (scripts/gpu-check.sh --pack makes one)" >&2; exit 1; }
export PATH="$(dirname "$NODE"):$PATH"
[ -d dist ] || { command -v npm >/dev/null && npm run build >/dev/null; }

# NVIDIA's Vulkan driver lives in libGLX_nvidia.so.0; its loader manifest is sometimes not installed.
if [ -z "${VK_ICD_FILENAMES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
  glx="$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia.so.0 /{ print $NF; exit }')"
  if [ -n "$glx" ]; then
    mkdir -p tmp && printf '{ "file_format_version": "1.0.0", "ICD": { "library_path": "%s", "api_version": "1.3" } }\n' "$glx" > tmp/nvidia_icd.json
    export VK_ICD_FILENAMES="$PWD/tmp/nvidia_icd.json"
    echo "gpu-check: wrote tmp/nvidia_icd.json for $glx"
  fi
fi

echo "== node $("$NODE" --version), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
echo "== the adapter Dawn finds"
probe="$("$NODE" dist/runtime/backend/webgpu.js --pipec-probe-webgpu 2>/dev/null | grep '^{' || true)"
echo "   ${probe:-the probe printed nothing}"
software="$(printf '%s' "$probe" | "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const a=JSON.parse(s).adapter;console.log(a?(a.software?"software":"hardware"):"none")}catch{console.log("none")}})')"
case "$software" in
  none) echo "gpu-check: Dawn found no WebGPU adapter (a Vulkan driver and libvulkan.so.1 are needed)" >&2; exit 2 ;;
  software) if [ "$ALLOW_SOFTWARE" != 1 ]; then echo "gpu-check: only a software adapter here; --allow-software to rehearse on it" >&2; exit 2; fi ;;
esac

mkdir -p tmp
mocha=("$NODE" node_modules/mocha/bin/mocha.js --no-config --timeout 600000)
declare -A took status
for b in webgpu wasm tensorflow; do
  echo "== numerical suite on $b"
  t0=$(date +%s%N)
  PIPEC_TEST_BACKENDS=$b "${mocha[@]}" dist/test/runtime-ops.test.js > "tmp/gpu-check-$b.log" 2>&1 || true
  took[$b]=$(( ($(date +%s%N) - t0) / 1000000 ))
  grep -E 'runtime ops on|passing|failing|pending|^ +[0-9]+\) ' "tmp/gpu-check-$b.log" || true
  if grep -q 'runtime ops on' "tmp/gpu-check-$b.log"; then status[$b]="$(grep -Eo '[0-9]+ (passing|failing)' "tmp/gpu-check-$b.log" | paste -sd ' ')"; else status[$b]="not available here"; fi
done
echo "== test/e2e/webgpu.test.ts"
"${mocha[@]}" dist/test/e2e/webgpu.test.js 2>&1 | grep -E '✔|^ +[0-9]+\) |passing|failing|pending|webgpu:' || true

echo "== runtime benchmark"
if command -v npm >/dev/null && [ -x node_modules/.bin/tsc ]; then npm run -s bench:runtime 2>&1 | grep -v '^Warning: max'; else "$NODE" dist/bench/runtime.bench.js 2>&1 | grep -v '^Warning: max'; fi

echo "== numerical suite (test/runtime-ops.test.ts), same machine"
for b in webgpu wasm tensorflow; do printf '   %-11s %5d.%01d s   %s\n' "$b" $((took[$b] / 1000)) $((took[$b] % 1000 / 100)) "${status[$b]}"; done
