#!/usr/bin/env bash
# Offline set-up of the native TensorFlow backend for TensorFlow.js (@tensorflow/tfjs-node 4.22.0).
#
# tfjs-node's own install script downloads libtensorflow from storage.googleapis.com, which fails
# here (and on air-gapped clusters). This script does instead:
#   1. installs @tensorflow/tfjs-node@4.22.0 into ./node_modules WITHOUT its install script
#      (npm install --no-save --ignore-scripts; package.json and package-lock.json are not touched),
#      and checks that nothing already installed was removed or changed version;
#   2. gets a tensorflow-cpu wheel with pip (pip's configured index / find-links only), or uses the
#      wheel named by PIPEC_TF_WHEEL;
#   3. extracts the TensorFlow C API from the wheel (libtensorflow_cc.so.2, libtensorflow_framework.so.2
#      and the tensorflow/c headers) into node_modules/@tensorflow/tfjs-node/deps;
#   4. builds tfjs-node's binding with node-gyp against the local Node headers (never downloads them);
#   5. verifies: the backend loads, tf.getBackend() is 'tensorflow', a matmul and a gradient are right.
# See docs/tensorflow-backend.md.
#
# Environment:
#   PIPEC_TF_WHEEL        path to a tensorflow-cpu (or tensorflow) wheel for Linux x86_64; skips pip
#   PIPEC_TF_VERSION      tensorflow-cpu version pip fetches (default 2.21.0)
#   PIPEC_TF_PACKAGE      the pip project to fetch (default tensorflow-cpu)
#   PIPEC_TFJS_NODE_TGZ   a tarball made by `npm pack @tensorflow/tfjs-node@4.22.0`, installed instead of
#                         asking the npm registry for it (its dependencies still come from npm's cache
#                         or registry as configured)
#   PIPEC_PYTHON          python used for pip, wheel extraction and gyp (default python3)
#   PIPEC_TF_FORCE=1      redo everything even if a working set-up is found
#   JOBS                  parallel compile jobs (default: number of CPUs)
set -euo pipefail

TFJS_NODE_VERSION=4.22.0
TF_VERSION="${PIPEC_TF_VERSION:-2.21.0}"
TF_PACKAGE="${PIPEC_TF_PACKAGE:-tensorflow-cpu}"
PYTHON="${PIPEC_PYTHON:-python3}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
PKG="$ROOT/node_modules/@tensorflow/tfjs-node"
GPU_PKG="$ROOT/node_modules/@tensorflow/tfjs-node-gpu"
STAMP="$PKG/deps/PIPEC_SETUP"
T_START=$(date +%s)

say()  { printf '[setup-tensorflow] %s\n' "$*"; }
warn() { printf '[setup-tensorflow] WARNING: %s\n' "$*" >&2; }
die()  { printf '[setup-tensorflow] ERROR: %s\n' "$*" >&2; exit 1; }
phase_start() { PHASE_T=$(date +%s); say "== $*"; }
phase_end()   { say "   done in $(( $(date +%s) - PHASE_T ))s"; }

TMP=""
cleanup() { if [[ -n "$TMP" && -d "$TMP" ]]; then rm -rf "$TMP"; fi; }
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Checks that need nothing installed.
# ---------------------------------------------------------------------------------------------
[[ "$(uname -s)" == Linux ]] || die "only Linux is supported (this is $(uname -s))"
ARCH="$(uname -m)"
if [[ "$ARCH" != x86_64 ]]; then
  [[ -n "${PIPEC_TF_WHEEL:-}" ]] || die "only Linux x86_64 is tested (this is $ARCH); set PIPEC_TF_WHEEL to a TensorFlow wheel for $ARCH to try anyway"
  warn "untested architecture $ARCH; using PIPEC_TF_WHEEL=$PIPEC_TF_WHEEL"
fi
[[ -f package.json && -d node_modules/@tensorflow/tfjs-core ]] \
  || die "run this from a checkout after 'npm ci' (node_modules/@tensorflow/tfjs-core is missing)"
if [[ -n "${PIPEC_TF_WHEEL:-}" && ! -f "$PIPEC_TF_WHEEL" ]]; then die "PIPEC_TF_WHEEL=$PIPEC_TF_WHEEL is not a file"; fi
if [[ -n "${PIPEC_TFJS_NODE_TGZ:-}" && ! -f "$PIPEC_TFJS_NODE_TGZ" ]]; then die "PIPEC_TFJS_NODE_TGZ=$PIPEC_TFJS_NODE_TGZ is not a file"; fi
command -v node >/dev/null || die "node is not on PATH"
command -v npm >/dev/null || die "npm is not on PATH"
command -v "$PYTHON" >/dev/null || die "$PYTHON is not on PATH (needed by pip, the wheel extraction and node-gyp)"
command -v make >/dev/null || die "make is not installed (Debian: apt-get install build-essential)"
command -v "${CXX:-g++}" >/dev/null || command -v c++ >/dev/null || die "no C++ compiler (Debian: apt-get install build-essential)"

# The verification: loads the backend through the project's own module resolution.
verify() {
  TF_CPP_MIN_LOG_LEVEL=2 node --input-type=module -e '
    const tf = await import("@tensorflow/tfjs-node");
    const core = await import("@tensorflow/tfjs-core");
    const fail = (m) => { console.error("verification failed: " + m); process.exit(1); };
    if (tf.getBackend() !== "tensorflow") fail("tf.getBackend() is " + tf.getBackend());
    if (core.getBackend() !== "tensorflow") fail("the project'"'"'s @tensorflow/tfjs-core sees backend " + core.getBackend() + " (two copies of tfjs-core?)");
    const m = Array.from(await tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5, 6], [7, 8]])).data());
    if (m.join() !== "19,22,43,50") fail("matmul gave " + m);
    const g = Array.from(await tf.grad((x) => x.square().sum())(tf.tensor1d([1, 2, 3])).data());
    if (g.join() !== "2,4,6") fail("gradient gave " + g);
    const a = tf.randomNormal([64, 32], 0, 1, "float32", 1), b = tf.randomNormal([32, 16], 0, 1, "float32", 2);
    const c = await tf.matMul(a, b).data(), av = await a.data(), bv = await b.data();
    let worst = 0;
    for (let i = 0; i < 64; i++) for (let j = 0; j < 16; j++) { let s = 0; for (let k = 0; k < 32; k++) s += av[i * 32 + k] * bv[k * 16 + j]; worst = Math.max(worst, Math.abs(s - c[i * 16 + j])); }
    if (!(worst < 1e-4)) fail("64x32 @ 32x16 matmul differs from a JS reference by " + worst);
    console.log("backend=" + tf.getBackend() + " tfjs=" + tf.version["tfjs-core"] + " tfjs-node=" + tf.version["tfjs-node"] + " matmul ok, gradient ok (max err " + worst.toExponential(1) + ")");
  ' 2> >(grep -v -E "oneDNN custom operations|^WARNING: All log messages before absl" >&2)
}

# ---------------------------------------------------------------------------------------------
# Already set up?
# ---------------------------------------------------------------------------------------------
if [[ "${PIPEC_TF_FORCE:-0}" != 1 && -f "$STAMP" ]]; then
  want=""
  if [[ -n "${PIPEC_TF_WHEEL:-}" ]]; then want="$(basename "$PIPEC_TF_WHEEL")"; fi
  if [[ -z "$want" ]] || grep -qF "wheel=$want" "$STAMP"; then
    if out="$(verify 2>&1)"; then
      say "already set up ($(grep '^wheel=' "$STAMP" | cut -d= -f2-)): $out"
      say "nothing to do; PIPEC_TF_FORCE=1 redoes it"
      exit 0
    fi
    say "an earlier set-up is there but does not load; redoing it"
  fi
fi

# Node headers: npm's configured nodedir, else the ones installed next to node, else node-gyp's cache.
# node-gyp is never allowed to download headers.
NODE_VER="$(node -p 'process.versions.node')"
NODEDIR="$(npm config get nodedir 2>/dev/null || true)"
if [[ -z "$NODEDIR" || "$NODEDIR" == undefined || "$NODEDIR" == null ]]; then NODEDIR=""; fi
if [[ -z "$NODEDIR" ]]; then
  prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/node-gyp/$NODE_VER"
  for d in "$prefix" "$cache"; do
    if [[ -f "$d/include/node/node_api.h" && -f "$d/include/node/common.gypi" ]]; then NODEDIR="$d"; break; fi
  done
fi
[[ -n "$NODEDIR" && -f "$NODEDIR/include/node/node_api.h" ]] \
  || die "no Node.js headers found (looked at npm's nodedir, $(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node and node-gyp's cache); install them or set 'npm config set nodedir DIR'"
# node-gyp: the one npm runs scripts with, else the one bundled with npm, else one on PATH.
NODE_GYP=""
if [[ -n "${npm_config_node_gyp:-}" && -f "${npm_config_node_gyp}" ]]; then
  NODE_GYP="$npm_config_node_gyp"
else
  npm_cli="$(readlink -f "$(command -v npm)")"
  for cand in "$(dirname "$npm_cli")/../node_modules/node-gyp/bin/node-gyp.js" \
              "$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js"; do
    if [[ -f "$cand" ]]; then NODE_GYP="$(readlink -f "$cand")"; break; fi
  done
fi
if [[ -z "$NODE_GYP" ]]; then
  command -v node-gyp >/dev/null || die "node-gyp not found (it ships with npm; is npm installed normally?)"
  NODE_GYP="$(readlink -f "$(command -v node-gyp)")"
fi

say "project:     $ROOT"
say "node:        $(node -v) (N-API $(node -p 'process.versions.napi')), headers from $NODEDIR"
say "node-gyp:    $NODE_GYP"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/pipec-tf.XXXXXX")"

# ---------------------------------------------------------------------------------------------
# 1. @tensorflow/tfjs-node without its install script.
# ---------------------------------------------------------------------------------------------
# "path version" of every package under node_modules, to prove that nothing is removed or changed.
snapshot() {
  node -e '
    const fs = require("fs"), path = require("path"); const out = [];
    const pkg = (p) => { let v; try { v = JSON.parse(fs.readFileSync(path.join(p, "package.json"), "utf8")).version; } catch { return; } out.push(p + " " + v); walk(path.join(p, "node_modules")); };
    const walk = (d) => { let es; try { es = fs.readdirSync(d); } catch { return; }
      for (const e of es) { if (e.startsWith(".")) continue; const p = path.join(d, e);
        if (e.startsWith("@")) { let ss = []; try { ss = fs.readdirSync(p); } catch {} for (const s of ss) pkg(path.join(p, s)); } else pkg(p); } };
    walk("node_modules"); console.log(out.join("\n"));' | LC_ALL=C sort
}
tfjs_node_complete() {
  [[ -f "$PKG/package.json" ]] || return 1
  node -e '
    const fs = require("fs"), path = require("path"); const dir = path.resolve(process.argv[1]);
    const p = require(path.join(dir, "package.json"));
    if (p.version !== process.argv[2]) process.exit(1);
    // Node'"'"'s lookup, without require.resolve (some packages do not export ./package.json).
    const find = (name) => { for (let d = dir; ; d = path.dirname(d)) {
      const f = path.join(d, "node_modules", name, "package.json"); if (fs.existsSync(f)) return f;
      if (d === path.dirname(d)) throw new Error(name + " missing"); } };
    for (const d of Object.keys(p.dependencies || {})) find(d);
    if (require(find("@tensorflow/tfjs")).version !== process.argv[2]) process.exit(1);
  ' "$PKG" "$TFJS_NODE_VERSION" 2>/dev/null
}

phase_start "1/4 install @tensorflow/tfjs-node@$TFJS_NODE_VERSION (install script skipped)"
if [[ "${PIPEC_TF_FORCE:-0}" != 1 ]] && tfjs_node_complete; then
  say "already in node_modules with its dependencies"
else
  spec="@tensorflow/tfjs-node@$TFJS_NODE_VERSION"
  if [[ -n "${PIPEC_TFJS_NODE_TGZ:-}" ]]; then
    [[ -f "$PIPEC_TFJS_NODE_TGZ" ]] || die "PIPEC_TFJS_NODE_TGZ=$PIPEC_TFJS_NODE_TGZ is not a file"
    spec="$(readlink -f "$PIPEC_TFJS_NODE_TGZ")"
  fi
  had_gpu=0; [[ -d "$GPU_PKG" ]] && had_gpu=1
  snapshot > "$TMP/before.txt"
  say "npm install --no-save --ignore-scripts $spec"
  npm install --no-save --ignore-scripts --no-audit --no-fund "$spec" 2>&1 | sed 's/^/    npm: /'
  # --ignore-scripts also lets the optional @tensorflow/tfjs-node-gpu of package.json in without its
  # binding (its own install script is what normally fails and drops it). A tfjs-node-gpu that cannot
  # load would only produce errors and duplicate-kernel warnings, so it goes back out.
  if [[ $had_gpu == 0 && -d "$GPU_PKG" ]] && ! compgen -G "$GPU_PKG/lib/napi-v*/tfjs_binding.node" >/dev/null; then
    say "removing @tensorflow/tfjs-node-gpu again (npm added it without a binding; it was not installed before)"
    rm -rf "$GPU_PKG"
  fi
  snapshot > "$TMP/after.txt"
  # (tfjs-node itself may be replaced: that is the point)
  if lost="$(LC_ALL=C comm -23 "$TMP/before.txt" "$TMP/after.txt" | grep -v '^node_modules/@tensorflow/tfjs-node[ /]' || true)" \
     && [[ -n "$lost" ]]; then
    printf '%s\n' "$lost" | sed 's/^/    removed or changed: /' >&2
    die "npm removed or changed packages that were installed before (listed above); 'npm ci' restores the locked tree"
  fi
  say "added $(LC_ALL=C comm -13 "$TMP/before.txt" "$TMP/after.txt" | wc -l) packages; nothing that was installed was removed or changed"
  tfjs_node_complete || die "@tensorflow/tfjs-node@$TFJS_NODE_VERSION or one of its dependencies is missing after npm install"
fi
if [[ -d "$GPU_PKG" ]] && ! compgen -G "$GPU_PKG/lib/napi-v*/tfjs_binding.node" >/dev/null; then
  warn "@tensorflow/tfjs-node-gpu was already installed without its binding (left as it is); it cannot load"
fi
phase_end

# ---------------------------------------------------------------------------------------------
# 2. The TensorFlow wheel.
# ---------------------------------------------------------------------------------------------
phase_start "2/4 TensorFlow C API from a wheel"
if [[ -n "${PIPEC_TF_WHEEL:-}" ]]; then
  [[ -f "$PIPEC_TF_WHEEL" ]] || die "PIPEC_TF_WHEEL=$PIPEC_TF_WHEEL is not a file"
  WHEEL="$(readlink -f "$PIPEC_TF_WHEEL")"
  say "wheel from PIPEC_TF_WHEEL: $WHEEL"
else
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip does not work; install pip or set PIPEC_TF_WHEEL"
  dl() {  # pip download with pip's own configuration (index-url, extra-index-url, find-links)
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
      -d "$TMP/wheel" "$@" "$TF_PACKAGE==$TF_VERSION" > "$TMP/pip.log" 2>&1
  }
  say "pip download $TF_PACKAGE==$TF_VERSION (pip's configured index and find-links)"
  if ! dl; then
    # No wheel for this python: the C libraries in the wheel do not depend on Python, so any
    # CPython build of the same TensorFlow release will do.
    glibc_minor="$("$PYTHON" -c 'import platform; v = platform.libc_ver()[1] or "2.17"; print(v.split(".")[1])')"
    plats=(); for ((m = glibc_minor; m >= 17; m--)); do plats+=(--platform "manylinux_2_${m}_${ARCH}"); done
    plats+=(--platform "manylinux2014_${ARCH}")
    ok=0
    for py in 3.11 3.12 3.10 3.13 3.9; do
      say "  no wheel for this python's tags; trying cp${py/./} wheels"
      if dl --python-version "$py" --implementation cp "${plats[@]}"; then ok=1; break; fi
    done
    if [[ $ok == 0 ]]; then
      grep -E 'ERROR|Looking in' "$TMP/pip.log" | sed 's/^/    pip: /' >&2 || true
      die "pip found no $TF_PACKAGE==$TF_VERSION wheel; set PIPEC_TF_WHEEL=/path/to/the.whl or PIPEC_TF_VERSION"
    fi
  fi
  # pip masks passwords in the index URLs it prints.
  grep -E '^(Looking in|Processing|Downloading|Saved|  File was already)' "$TMP/pip.log" | sed 's/^ *//; s/^/    pip: /' || true
  wheels=("$TMP"/wheel/*.whl)
  WHEEL="${wheels[0]}"
  [[ -f "$WHEEL" ]] || die "pip reported success but left no wheel in $TMP/wheel"
fi
case "$(basename "$WHEEL")" in
  *linux*"$ARCH"*.whl) ;;
  *) die "$(basename "$WHEEL") is not a Linux $ARCH wheel" ;;
esac
say "wheel: $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"

# Extracted next to deps/ first and checked; a working set-up is only replaced by one that passed.
NEW="$PKG/deps.new"
rm -rf "$NEW"
mkdir -p "$NEW/lib" "$NEW/include"
"$PYTHON" - "$WHEEL" "$NEW" <<'PY' || { rm -rf "$NEW"; die "could not take the TensorFlow C API out of $(basename "$WHEEL") (reason above)"; }
import os, shutil, sys, zipfile
wheel, deps = sys.argv[1], sys.argv[2]
libs = {"tensorflow/libtensorflow_cc.so.2", "tensorflow/libtensorflow_framework.so.2"}
# what tensorflow/c/c_api.h and tensorflow/c/eager/c_api.h include, and their neighbours
heads = ("tensorflow/include/tensorflow/c/", "tensorflow/include/tensorflow/core/platform/",
         "tensorflow/include/tsl/", "tensorflow/include/xla/tsl/")
found, n = set(), 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if name in libs:
            dest = os.path.join(deps, "lib", os.path.basename(name)); found.add(name)
        elif name.startswith(heads) and not name.endswith("/"):
            dest = os.path.join(deps, "include", name[len("tensorflow/include/"):])
        else:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)
        os.chmod(dest, 0o755 if name in libs else 0o644)
        n += 1
missing = sorted(libs - found)
if missing:
    sys.exit("the wheel has no " + ", ".join(missing) + " (is it a TensorFlow 2.x wheel?)")
for h in ("tensorflow/c/c_api.h", "tensorflow/c/eager/c_api.h"):
    if not os.path.exists(os.path.join(deps, "include", h)):
        sys.exit("the wheel has no tensorflow/include/" + h)
print(f"[setup-tensorflow]    extracted {n} files")
PY
(
  cd "$NEW/lib"
  # binding.gyp links -ltensorflow -ltensorflow_framework; libtensorflow_cc.so.2 is the library that
  # exports the TF_*/TFE_* C API in the pip wheels. The binding records the real SONAMEs
  # (libtensorflow_cc.so.2, libtensorflow_framework.so.2) and finds them via its rpath
  # $ORIGIN/../../deps/lib. libtensorflow.so.2.9.1 is the name tfjs-node's scripts/install.js checks
  # for: should that script ever run (npm 11 skips it: the package is not in allowScripts), it then
  # builds against these files instead of deleting deps/ to download libtensorflow.
  ln -sf libtensorflow_cc.so.2 libtensorflow.so.2
  ln -sf libtensorflow.so.2 libtensorflow.so
  ln -sf libtensorflow_framework.so.2 libtensorflow_framework.so
  old_ver="$(node -e 'console.log(require(process.argv[1]).LIBTENSORFLOW_VERSION)' "$PKG/scripts/deps-constants.js" 2>/dev/null | tail -1 || true)"
  if [[ "$old_ver" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then ln -sf libtensorflow_cc.so.2 "libtensorflow.so.$old_ver"; fi
)
# (awk reads all of nm's output: no SIGPIPE under pipefail)
if command -v nm >/dev/null && ! nm -D --defined-only "$NEW/lib/libtensorflow_cc.so.2" 2>/dev/null \
     | awk '$NF ~ /^TFE_NewContext(@|$)/ { found = 1 } END { exit !found }'; then
  rm -rf "$NEW"
  die "$(basename "$WHEEL")'s libtensorflow_cc.so.2 does not export the TensorFlow C API (TFE_NewContext)"
fi
rm -rf "$PKG/deps" "$PKG/build" "$PKG"/lib/napi-v*
mv "$NEW" "$PKG/deps"
phase_end

# ---------------------------------------------------------------------------------------------
# 3. Build the binding.
# ---------------------------------------------------------------------------------------------
phase_start "3/4 build tfjs_binding.node with node-gyp ($JOBS jobs)"
# Where dist/index.js will look for it (node-pre-gyp's rule: lib/napi-v<best N-API version>/).
BINDING="$(cd "$PKG" && node -e 'console.log(require("@mapbox/node-pre-gyp").find(require.resolve("./package.json")))')"
NAPI_BUILD="$(sed -n 's|.*/napi-v\([0-9][0-9]*\)/[^/]*$|\1|p' <<<"$BINDING")"
[[ -n "$NAPI_BUILD" ]] || die "could not work out the N-API version from $BINDING"
say "target: ${BINDING#"$ROOT"/} (N-API v$NAPI_BUILD)"
(
  cd "$PKG"
  # --nodedir: headers from disk; node-gyp downloads nothing when it is given.
  PYTHON="$(command -v "$PYTHON")" node "$NODE_GYP" rebuild --nodedir="$NODEDIR" -j "$JOBS" \
    --module_name=tfjs_binding --module_path="$(dirname "$BINDING")" --napi_build_version="$NAPI_BUILD"
) > "$TMP/build.log" 2>&1 || { tail -40 "$TMP/build.log" >&2; die "node-gyp build failed (last lines above)"; }
grep -E '^\s+(CXX|SOLINK|COPY)' "$TMP/build.log" | sed 's/^ */    /' || true
[[ -f "$BINDING" ]] || die "node-gyp finished but $BINDING is missing"
phase_end

# ---------------------------------------------------------------------------------------------
# 4. Verify.
# ---------------------------------------------------------------------------------------------
phase_start "4/4 verify"
verify || die "the binding was built but does not work (see above)"
{
  echo "wheel=$(basename "$WHEEL")"
  echo "source=${PIPEC_TF_WHEEL:+PIPEC_TF_WHEEL}${PIPEC_TF_WHEEL:-pip}"
  echo "tfjs_node=$TFJS_NODE_VERSION"
  echo "node=$(node -v)"
  echo "binding=${BINDING#"$ROOT"/}"
  echo "date=$(date -u +%FT%TZ)"
} > "$STAMP"
phase_end

say "done in $(( $(date +%s) - T_START ))s: @tensorflow/tfjs-node $TFJS_NODE_VERSION on $(basename "$WHEEL")"
say "disk: $(du -sh "$PKG/deps" | cut -f1) in ${PKG#"$ROOT"/}/deps"
say "note: 'npm ci' and a plain 'npm install' remove @tensorflow/tfjs-node (it is not in package.json); run this again afterwards"
