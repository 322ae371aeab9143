#!/usr/bin/env bash
# A Python virtual environment with PyTorch >= 2 and transformers: .venv-torch/ in the repository
# (git-ignored). It serves the exported trainer's FSDP mode (train.py --fsdp) and its tests (Debian 12's
# python3-torch is 1.13, whose FSDP cannot even be imported under Python 3.11), and the independent
# references of the numerical tests (test/reference/*.py: torch.optim, clip_grad_norm_, transformers'
# schedules and modules such as CLIPVisionModel, LlamaForCausalLM, MixtralForCausalLM, LLaVA), the
# Hugging Face layout and export tests and the pad-mode reference (LLaVA's expand2square + transformers'
# PIL-based CLIP image processor): Pillow, which transformers' image processors need. TensorBoard, whose
# own event-file reader checks the event files `pipec run` writes (test/e2e/dashboard.test.ts). PEFT, which
# loads the LoRA adapters pipec and its exported trainer write (test/lora.test.ts, export-torch2).
#
# pip installs only from what it is configured to reach (pip.conf's index / find-links: on this project's
# machines a local wheel store that holds a CPU build of torch); nothing else is downloaded.
#
# Environment:
#   PIPEC_PYTHON          the Python the environment is made from (default python3)
#   PIPEC_TORCH_SPEC      what pip installs (default "torch>=2 numpy transformers safetensors tokenizers pillow
#                         tensorboard pyflakes peft"; numpy only quiets torch's warning; pyflakes lints the
#                         exported program's Python, test/export-python.test.ts)
#   PIPEC_TORCH_FORCE=1   make the environment anew even if it works
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PIPEC_PYTHON:-python3}"
SPEC="${PIPEC_TORCH_SPEC:-torch>=2 numpy transformers safetensors tokenizers pillow tensorboard pyflakes peft}"
VENV="$PWD/.venv-torch"
versions='import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")'
check='import sys, torch, transformers, safetensors, tokenizers, PIL; sys.exit(0 if int(torch.__version__.split(".")[0]) >= 2 else 1)'

# TensorBoard's reader, pyflakes and PEFT, added to the environment later than torch: an environment
# without them gets them alone
tb_check='import pyflakes, peft; from tensorboard.backend.event_processing.event_accumulator import EventAccumulator'

if [ "${PIPEC_TORCH_FORCE:-0}" != 1 ] && [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$check" 2>/dev/null; then
  if ! "$VENV/bin/python" -c "$tb_check" 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --retries 0 --timeout 20 tensorboard pyflakes peft 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2) ||
      { echo "setup-torch: pip could not install tensorboard, pyflakes and peft from its configured index" >&2; exit 1; }
  fi
  echo "setup-torch: $VENV already has $("$VENV/bin/python" -c "$versions"), tensorboard, pyflakes, peft"
  exit 0
fi
t0=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# --retries 0 / a short timeout: where the configured index is unreachable, fail fast rather than wait
# shellcheck disable=SC2086 # SPEC is a list of requirements
if ! "$VENV/bin/pip" install --quiet --retries 0 --timeout 20 $SPEC 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); then
  rm -rf "$VENV"
  echo "setup-torch: pip could not install $SPEC from its configured index; the FSDP and reference tests will skip" >&2
  exit 1
fi
"$VENV/bin/python" -c "$check" || { echo "setup-torch: the environment lacks torch >= 2, transformers, safetensors, tokenizers or Pillow" >&2; exit 1; }
"$VENV/bin/python" -c "$tb_check" || { echo "setup-torch: the environment lacks tensorboard, pyflakes or peft" >&2; exit 1; }
echo "setup-torch: $("$VENV/bin/python" -c "$versions") in $VENV ($(($(date +%s) - t0)) s)"
