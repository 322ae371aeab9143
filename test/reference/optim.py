"""Reference optimizer trajectories for test/reference-optim.test.ts, from PyTorch and transformers.

usage: optim.py SPEC.json OUT_DIR

The parameters are those of a tiny LlavaForConditionalGeneration (CLIP vision tower, LLaVA projector,
Llama), under pipec's names, so the no-decay rule meets real names. Which of them decay comes from
transformers' Trainer.get_decay_parameter_names; the optimizers are torch.optim.AdamW / SGD, the
clipping torch.nn.utils.clip_grad_norm_, the schedules transformers' get_*_schedule_with_warmup and the
warmup length from a ratio TrainingArguments.get_warmup_steps. Nothing here restates pipec's formulas.

Writes OUT_DIR/inputs.safetensors (initial parameters and the gradients of every step, float32; the same
for every case) and, per case, OUT_DIR/<case>.safetensors (the parameters after every step and the
optimizer state after the last, float32) and OUT_DIR/<case>.json (learning rates and gradient norms per
step, the decayed parameter names, the warmup length).
"""
import json
import math
import os
import sys
from types import SimpleNamespace

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
from transformers import optimization as schedules
from transformers.trainer import Trainer
from transformers.training_args import TrainingArguments

# transformers' LLaVA module names -> pipec's per-component (checkpoint) names
PREFIXES = [("model.vision_tower.", "vision_model."), ("model.multi_modal_projector.", "multi_modal_projector."), ("model.language_model.", "model.")]


def pipec_name(name):
    for hf, ours in PREFIXES:
        if name.startswith(hf):
            return ours + name[len(hf):]
    return name


def tiny_llava():
    vision = CLIPVisionConfig(hidden_size=8, intermediate_size=12, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=4)
    text = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=12, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    return LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_id=15))


def scheduler(opt, case, warmup, total):
    name, attrs, lr = case["schedule"]["name"], case["schedule"]["attrs"], case["attrs"]["lr"]
    min_ratio = attrs.get("min_lr_ratio", 0.0)
    if name == "cosine":
        if min_ratio > 0:
            return schedules.get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, total, min_lr_rate=min_ratio)
        return schedules.get_cosine_schedule_with_warmup(opt, warmup, total)
    if name == "linear":
        if min_ratio > 0:  # linear decay to lr_end: the polynomial schedule of power 1
            return schedules.get_polynomial_decay_schedule_with_warmup(opt, warmup, total, lr_end=lr * min_ratio, power=1.0)
        return schedules.get_linear_schedule_with_warmup(opt, warmup, total)
    if name == "constant":
        return schedules.get_constant_schedule_with_warmup(opt, warmup)
    raise SystemExit(f"unknown schedule {name}")


def warmup_steps(attrs, total):
    if attrs.get("warmup_steps", 0) > 0:
        return int(attrs["warmup_steps"])
    # transformers 5 reads a warmup_steps below 1 as a ratio of the training steps
    return TrainingArguments.get_warmup_steps(SimpleNamespace(warmup_steps=attrs.get("warmup_ratio", 0.0)), total)


def main():
    spec = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    steps = spec["steps"]
    gen = torch.Generator().manual_seed(spec["seed"])
    model = tiny_llava()
    names = [n for n, _ in model.named_parameters()]
    decayed = set(Trainer.get_decay_parameter_names(None, model))
    shapes = {n: p.shape for n, p in model.named_parameters()}
    init = {n: torch.randn(shapes[n], generator=gen) for n in names}
    # gradients of very different sizes from step to step, so that clipping acts on some steps only
    grads = []
    for s in range(steps):
        scale = 10 ** (torch.rand((), generator=gen).item() * 2.5 - 2)
        grads.append({n: torch.randn(shapes[n], generator=gen) * scale for n in names})
    inputs = {f"init.{pipec_name(n)}": init[n].contiguous() for n in names}
    for s, g in enumerate(grads):
        inputs.update({f"grad.{s}.{pipec_name(n)}": g[n].contiguous() for n in names})
    save_file(inputs, os.path.join(out, "inputs.safetensors"))

    for case in spec["cases"]:
        params = {n: torch.nn.Parameter(init[n].clone()) for n in names}
        a = case["attrs"]
        own = case.get("group") or {}
        mine = (lambda n: pipec_name(n).startswith(own["prefix"])) if own else (lambda n: False)  # noqa: E731
        groups = []
        for in_group in (False, True):
            # a component with its own settings (LLaVA's mm_projector_lr): param groups of its own lr and
            # weight decay, which the schedule (a LambdaLR) scales like the others
            wd = own.get("weight_decay", a.get("weight_decay", 0.0)) if in_group else a.get("weight_decay", 0.0)
            extra = {"lr": own["lr"]} if in_group and "lr" in own else {}
            for dec in (True, False):
                ps = [params[n] for n in names if mine(n) == in_group and (n in decayed) == dec]
                if ps:
                    groups.append({"params": ps, "weight_decay": wd if dec else 0.0, **extra})
        if case["optimizer"] == "adamw":
            opt = torch.optim.AdamW(groups, lr=a["lr"], betas=(a.get("beta1", 0.9), a.get("beta2", 0.999)), eps=a.get("eps", 1e-8))
        else:
            opt = torch.optim.SGD(groups, lr=a["lr"], momentum=a.get("momentum", 0.9))
        warm = warmup_steps(case["schedule"]["attrs"], steps)
        sched = scheduler(opt, case, warm, steps)
        lrs, norms, trajectory = [], [], {}
        for s in range(steps):
            for n in names:
                params[n].grad = grads[s][n].clone()
            lrs.append(sched.get_last_lr()[0])
            max_norm = case["clip"] if case["clip"] > 0 else math.inf
            norms.append(torch.nn.utils.clip_grad_norm_([params[n] for n in names], max_norm).item())
            opt.step()
            sched.step()
            trajectory.update({f"step.{s}.{pipec_name(n)}": params[n].detach().clone() for n in names})
        for n in names:
            st = opt.state[params[n]]
            for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
                if st.get(key) is not None:
                    trajectory[f"{key}.{pipec_name(n)}"] = st[key].clone()
        save_file(trajectory, os.path.join(out, f"{case['name']}.safetensors"))
        with open(os.path.join(out, f"{case['name']}.json"), "w") as f:
            json.dump({"lr": lrs, "grad_norm": norms, "warmup": warm, "decayed": sorted(pipec_name(n) for n in decayed)}, f)


if __name__ == "__main__":
    main()
