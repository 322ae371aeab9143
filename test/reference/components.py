"""Reference forwards and gradients of pipec's standard components from transformers' own modules.

usage: components.py SPEC.json OUT_DIR

For each case of the spec, CASE_DIR (relative to OUT_DIR)/<component>/config.json is pipec's own config for the component
(runtime/weights/hf-config.ts). From it this builds the transformers model (CLIPVisionModel,
SiglipVisionModel, LlavaMultiModalProjector, LlamaForCausalLM, MixtralForCausalLM) with tiny random
weights and writes them into the same folder, in the layout of pipec's checkpoints (a vision tower under
vision_model.*, as pipec writes and as transformers loads it; the language model as save_pretrained
writes it), so the test loads them with pipec's own loading code. The reference models are then loaded
back by transformers from those folders and run in float64 on the float32 weights, so the references
carry no rounding of their own. Per case, CASE_DIR/reference.safetensors holds the inputs pipec needs
(float32) and, in float64:
  vision.out, vision.grad.NAME   hidden_states[select_layer] (without the class token for "patch") and
                                 the gradients of sum(out * vision.weight)
  proj.out, proj.grad.NAME       the LLaVA projector on proj.input, gradients of sum(out * proj.weight)
  lm.logits, lm.loss, lm.grad.NAME   the causal LM on the text-only batch: transformers' loss (for
                                 Mixtral with router_aux_loss_coef times its load-balancing loss)
  llava.logits, llava.loss, llava.grad.NAME   LlavaForConditionalGeneration on the image batch
                                 (vision_feature_layer = select_layer, strategy "default" drops the
                                 class token for "patch", "full" keeps every token)
Gradient names are pipec's; a parameter the loss does not reach has no entry.
"""
import json
import os
import sys

import torch
from tiny_weights import randomize
from safetensors.torch import load_file, save_file
from transformers import (AutoConfig, CLIPVisionModel, LlamaForCausalLM, LlavaConfig, LlavaForConditionalGeneration,
                          MixtralForCausalLM, SiglipVisionModel)
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector


def float64_throughout():
    """transformers casts to float32 where half precision would lose accuracy (the attention softmax,
    RMSNorm, rotary angles, the router, the loss: `.float()`, `.to(torch.float32)`, softmax(dtype=float32)).
    On float64 models those casts would round the reference to float32: here every cast to float32, and
    every float32 tensor made by a factory (the rotary frequencies, the router's counts), is float64
    instead, so the references carry no float32 rounding and the comparison measures pipec's alone."""
    to, softmax = torch.Tensor.to, torch.nn.functional.softmax

    def to64(self, *args, **kwargs):
        if kwargs.get("dtype") == torch.float32:
            kwargs["dtype"] = torch.float64
        args = tuple(torch.float64 if a == torch.float32 else a for a in args)
        return to(self, *args, **kwargs)

    def softmax64(x, dim=None, _stacklevel=3, dtype=None):
        return softmax(x, dim=dim, dtype=torch.float64 if dtype == torch.float32 else dtype)

    def factory64(make):
        def made(*args, **kwargs):
            if kwargs.get("dtype") == torch.float32:
                kwargs["dtype"] = torch.float64
            return make(*args, **kwargs)
        return made

    for name in ("zeros", "arange"):  # the router's counts, the rotary frequencies
        setattr(torch, name, factory64(getattr(torch, name)))
    torch.Tensor.to = to64
    torch.Tensor.float = lambda self, *a, **k: self.double(*a, **k)
    torch.nn.functional.softmax = softmax64



def f32(t):
    return t.detach().type(torch.float32).contiguous()


def f64(t):
    return t.detach().to(torch.float64).contiguous()


def grads(model, rename, out, prefix):
    for name, p in model.named_parameters():
        if p.grad is not None:
            out[f"{prefix}.grad.{rename(name)}"] = f64(p.grad)


def vision_ref(case_dir, comp, gen, refs):
    d = os.path.join(case_dir, comp)
    cfg = json.load(open(os.path.join(d, "config.json")))
    pipec = cfg["pipec"]
    siglip = cfg["model_type"] == "siglip_vision_model"
    cls = SiglipVisionModel if siglip else CLIPVisionModel
    model = cls(AutoConfig.from_pretrained(d))
    randomize(model, gen)
    # pipec's layout (and the hub's): vision_model.*; transformers 5 writes the names without the prefix
    save_file({f"vision_model.{k}": f32(v) for k, v in model.state_dict().items()}, os.path.join(d, "model.safetensors"))
    model = cls.from_pretrained(d, attn_implementation="eager", dtype=torch.float64)
    model.train(False)
    c, size = cfg["num_channels"], cfg["image_size"]
    pixels = torch.randn(2, c, size, size, generator=gen)
    states = model(pixel_values=pixels.double(), output_hidden_states=True).hidden_states[pipec["select_layer"]]
    if not siglip and pipec["select"] == "patch":
        states = states[:, 1:]
    weight = torch.randn(states.shape, generator=gen)
    (states * weight.double()).sum().backward()
    refs.update({"vision.pixels": f32(pixels), "vision.weight": f32(weight), "vision.out": f64(states)})
    grads(model, lambda n: f"vision_model.{n}", refs, "vision")
    return model


def projector_ref(case_dir, comp, vision_cfg, text_cfg, gen, refs, tokens):
    d = os.path.join(case_dir, comp)
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg["mm_projector_type"] == "mlp2x_gelu", "transformers' LLaVA projector is mlp_gelu of depth 2"
    llava_cfg = LlavaConfig(vision_config=vision_cfg, text_config=text_cfg, projector_hidden_act="gelu", multimodal_projector_bias=True)
    proj = LlavaMultiModalProjector(llava_cfg)
    randomize(proj, gen)
    save_file({f"multi_modal_projector.{k}": f32(v) for k, v in proj.state_dict().items()}, os.path.join(d, "model.safetensors"))
    state = {k: v.clone() for k, v in proj.state_dict().items()}
    proj = proj.double()
    x = torch.randn(2, tokens, cfg["mm_hidden_size"], generator=gen)
    y = proj(x.double())
    weight = torch.randn(y.shape, generator=gen)
    (y * weight.double()).sum().backward()
    refs.update({"proj.input": f32(x), "proj.weight": f32(weight), "proj.out": f64(y)})
    grads(proj, lambda n: f"multi_modal_projector.{n}", refs, "proj")
    return state


def lm_ref(case_dir, comp, gen, refs, batch):
    d = os.path.join(case_dir, comp)
    mixtral = json.load(open(os.path.join(d, "config.json")))["model_type"] == "mixtral"
    cls = MixtralForCausalLM if mixtral else LlamaForCausalLM
    model = cls._from_config(AutoConfig.from_pretrained(d), attn_implementation="eager")
    randomize(model, gen)
    model.save_pretrained(d)  # the language model as transformers writes it: pipec reads these names
    # eager experts: the default grouped matmul has no float64 kernel
    model = cls.from_pretrained(d, attn_implementation="eager", dtype=torch.float64, **({"experts_implementation": "eager"} if mixtral else {}))
    model.train(False)
    out = model(**batch_tensors(batch))
    out.loss.backward()
    refs.update({"lm.logits": f64(out.logits), "lm.loss": f64(out.loss.reshape(1))})
    if mixtral:
        refs["lm.aux_loss"] = f64(out.aux_loss.reshape(1))
        unfuse_experts(model, d, refs)
    else:
        grads(model, lambda n: n, refs, "lm")
    return model


def unfuse_experts(model, d, refs):
    """transformers 5 keeps a layer's experts fused (mlp.experts.gate_up_proj [E, 2I, D], down_proj
    [E, D, I]) and writes them as block_sparse_moe.experts.E.w1 / w3 / w2 (pipec's names): the gradients
    are split the same way, checked against the split save_pretrained wrote."""
    saved = load_file(os.path.join(d, "model.safetensors"))
    for name, p in model.named_parameters():
        g = p.grad
        if g is None:
            continue
        if name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
            layer = name[: name.index("mlp.experts.")]
            for e in range(p.shape[0]):
                ours = f"{layer}block_sparse_moe.experts.{e}"
                if name.endswith("gate_up_proj"):
                    half = p.shape[1] // 2
                    parts = {"w1": (p[e, :half], g[e, :half]), "w3": (p[e, half:], g[e, half:])}
                else:
                    parts = {"w2": (p[e], g[e])}
                for w, (value, grad) in parts.items():
                    assert torch.equal(value.detach(), saved[f"{ours}.{w}.weight"].double()), f"{ours}.{w}: not the slice transformers saved"
                    refs[f"lm.grad.{ours}.{w}.weight"] = f64(grad)
        elif name.endswith("mlp.gate.weight"):
            ours = name.replace("mlp.gate.weight", "block_sparse_moe.gate.weight")
            assert torch.equal(p.detach(), saved[ours].double())
            refs[f"lm.grad.{ours}"] = f64(g)
        else:
            refs[f"lm.grad.{name}"] = f64(g)


def batch_tensors(b):
    shape = (b["batch"], b["length"])
    return {"input_ids": torch.tensor(b["input_ids"]).reshape(shape), "attention_mask": torch.tensor(b["attention_mask"]).reshape(shape),
            "labels": torch.tensor(b["labels"]).reshape(shape)}


def llava_ref(case, vision, proj_state, lm, gen, refs):
    vcfg, pipec = vision.config, json.load(open(os.path.join(case["dir"], case["vision"], "config.json")))["pipec"]
    keeps_all = vcfg.model_type == "siglip_vision_model" or pipec["select"] == "cls_patch"
    cfg = LlavaConfig(vision_config=vcfg, text_config=lm.config, image_token_id=case["image_token_id"], vision_feature_layer=pipec["select_layer"],
                      vision_feature_select_strategy="full" if keeps_all else "default", projector_hidden_act="gelu", multimodal_projector_bias=True)
    model = LlavaForConditionalGeneration._from_config(cfg, attn_implementation="eager")
    sources = {}  # LLaVA's parameter name -> (pipec's name, value)
    for n, v in vision.state_dict().items():
        sources[f"model.vision_tower.{n}"] = (f"vision_model.{n}", v)
    for n, v in proj_state.items():
        sources[f"model.multi_modal_projector.{n}"] = (f"multi_modal_projector.{n}", v)
    for n, v in lm.state_dict().items():
        sources["lm_head.weight" if n == "lm_head.weight" else f"model.language_model.{n[len('model.'):]}"] = (n, v)
    names = {}
    with torch.no_grad():
        for n, p in model.named_parameters():
            ours, v = sources[n]
            assert p.shape == v.shape, f"{n}: {tuple(p.shape)} vs {tuple(v.shape)}"
            p.copy_(v)
            names[n] = ours
    model = model.double()
    model.train(False)
    b = case["llava_batch"]
    images = [i for i, s in enumerate(b["image_start"]) if s >= 0]
    c, size = vcfg.num_channels, vcfg.image_size
    pixels = torch.zeros(b["batch"], c, size, size)
    pixels[images] = torch.randn(len(images), c, size, size, generator=gen)
    out = model(pixel_values=pixels[images].double(), **batch_tensors(b))
    out.loss.backward()
    refs.update({"llava.pixels": f32(pixels), "llava.logits": f64(out.logits), "llava.loss": f64(out.loss.reshape(1))})
    grads(model, lambda n: names[n], refs, "llava")


def main():
    float64_throughout()
    spec = json.load(open(sys.argv[1]))
    for case in spec["cases"]:
        case["dir"] = os.path.join(sys.argv[2], case["dir"])  # relative to the output folder
        gen = torch.Generator().manual_seed(case["seed"])
        refs = {}
        vision = vision_ref(case["dir"], case["vision"], gen, refs)
        lm = lm_ref(case["dir"], case["llm"], gen, refs, case["text_batch"])
        proj_state = projector_ref(case["dir"], case["projector"], vision.config, lm.config, gen, refs, case["image_tokens"])
        if case.get("llava_batch"):
            llava_ref(case, vision, proj_state, lm, gen, refs)
        save_file(refs, os.path.join(case["dir"], "reference.safetensors"))


if __name__ == "__main__":
    main()
