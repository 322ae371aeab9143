"""The peer of bench/peer.bench.ts: what a user would run instead of pipec -- transformers'
LlavaForConditionalGeneration (or LlamaForCausalLM for a language model alone, --kind llama) with a plain
PyTorch training loop (torch.optim.AdamW without weight decay on
biases and norms, as transformers' Trainer; clip_grad_norm_; get_cosine_schedule_with_warmup) -- on the
micro-batches pipec prepared (`pipec prepare`), from the same initial weights (HF_DIR: a LLaVA folder the
bench writes from pipec's initial weights, or the Llama folder `pipec prepare --init` writes for the llm). Writes RUN/metrics.jsonl rows as pipec does (stage, step, loss,
tokens, elapsed_s), so the bench times every side the same way.

    python transformers_loop.py [--kind llava|llama] --hf HF_DIR --export EXPORT_DIR --data DATA --stage NAME --steps N --out RUN
"""
import argparse
import json
import os
import sys
import time

import torch
from transformers import LlamaForCausalLM, LlavaForConditionalGeneration, get_cosine_schedule_with_warmup


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["llava", "llama"], default="llava")
    ap.add_argument("--hf", required=True)
    ap.add_argument("--export", required=True, help="the exported program's folder: its Shards reader and STAGES are used")
    ap.add_argument("--data", required=True)
    ap.add_argument("--stage", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    # Only the data reader and the stage's declared settings come from the export; the training is the peer's own.
    sys.path.insert(0, args.export)
    import train as exported

    stage = next(s for s in exported.STAGES if s["name"] == args.stage)
    opt = stage["optimizer"]
    if opt["name"] != "adamw" or stage["schedule"]["name"] != "cosine":
        raise SystemExit("the peer loop runs adamw with a cosine schedule; stage %s has %s and %s" % (args.stage, opt["name"], stage["schedule"]["name"]))
    data = exported.Shards(os.path.join(args.data, args.stage), args.stage, verify=False, world=1)
    total, acc = data.index["steps"], stage["accumulate"]
    attrs = opt["attrs"]

    model_class = LlavaForConditionalGeneration if args.kind == "llava" else LlamaForCausalLM
    model = model_class.from_pretrained(args.hf)
    model.train()
    no_decay = [n for n, _ in model.named_parameters() if not exported.decays(n)]
    groups = [
        {"params": [p for n, p in model.named_parameters() if n not in no_decay], "weight_decay": float(attrs.get("weight_decay", 0.0))},
        {"params": [p for n, p in model.named_parameters() if n in no_decay], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=float(attrs["lr"]), betas=(float(attrs.get("beta1", 0.9)), float(attrs.get("beta2", 0.999))), eps=float(attrs.get("eps", 1e-8)))
    warm = int(exported.warmup_steps(stage["schedule"], total))
    scheduler = get_cosine_schedule_with_warmup(optimizer, warm, total)

    os.makedirs(args.out, exist_ok=True)
    metrics = open(os.path.join(args.out, "metrics.jsonl"), "w")
    t0 = time.time()
    for step in range(min(args.steps, total)):
        loss_sum, tokens = 0.0, 0
        for a in range(acc):
            b = data.micro(step * acc + a, torch.device("cpu"))
            ids, mask, labels = b["input_ids"].long(), b["attention_mask"].long(), b["labels"].long()
            images = {"pixel_values": b["pixel_values"]} if args.kind == "llava" else {}
            out = model(input_ids=ids, attention_mask=mask, labels=labels, **images)
            (out.loss / acc).backward()
            loss_sum += float(out.loss.detach())
            tokens += int(mask.sum())
        lr = scheduler.get_last_lr()[0]
        torch.nn.utils.clip_grad_norm_(model.parameters(), stage["clip_grad"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        row = {"stage": args.stage, "stage_index": 0, "step": step + 1, "loss": loss_sum / acc, "lm_loss": loss_sum / acc, "lr": lr, "tokens": tokens, "elapsed_s": time.time() - t0}
        metrics.write(json.dumps(row) + "\n")
    metrics.close()
    print("peer: %d steps, torch %s, transformers %s (%s attention), %d threads" % (
        min(args.steps, total), torch.__version__, model_class.__name__, model.config._attn_implementation, torch.get_num_threads()))


if __name__ == "__main__":
    main()
