"""Tiny Hugging Face checkpoints in every layout pipec reads, written by transformers itself (or, for the
layouts transformers 5 no longer writes, with the names renamed as transformers 4.x and the LLaVA repos
name them), and transformers' own loss and last-position logits of the same model on pipec's records.

usage: hf_layouts.py build OUT_DIR
           OUT_DIR/<family>/data/                  data.json, images/, tokenizer.json (+ _config)
           OUT_DIR/<family>/<layout>/main.pipe     a program whose components point at the layout's files
           OUT_DIR/<family>/layouts.json           the layouts written
       hf_layouts.py reference OUT_DIR/<family> RESULT.json
           prints {"loss": float, "last_logits": [[...], ...]}: LlavaForConditionalGeneration loaded by
           transformers from the folder it saved itself, on the records of RESULT.json (`pipec eval
           --records`: token ids, labels, image positions), all records in one right-padded batch.

Families: clip-llama (CLIPVisionModel + LlamaForCausalLM) and siglip-mixtral (SiglipVisionModel +
MixtralForCausalLM). One model per family: random weights rounded to bfloat16 so that every dtype
(F32, F16, BF16) stores the same values, and every layout holds exactly these weights.

Layouts (name -> what; where the names come from):
  components-5x   vision: CLIPVisionModel.save_pretrained (transformers 5 writes no `vision_model.`);
                  llm: *ForCausalLM.save_pretrained (Mixtral's experts per expert, as 5.x writes them);
                  projector: a standalone .safetensors with the LLaVA repos' names (model.mm_projector.0/.2)
  components-4x   vision: `vision_model.*` (transformers 4.x: CLIPVisionModel had a vision_model module;
                  5.x's conversion_mapping.py removes it with PrefixChange(prefix_to_remove="vision_model")),
                  config with 4.x keys (`rope_theta`, `torch_dtype`), F16, the llm sharded with an index;
                  projector: a standalone file with LLaVA's names (multi_modal_projector.linear_1/_2), BF16
  two-tower       vision: the hub's CLIPModel / SiglipModel checkpoint (vision_model.* + text_model.*),
                  BF16; projector: a standalone file with bare names (linear_1/_2)
  llava-4x        LlavaForConditionalGeneration, transformers 4.x (< 4.52) names: language_model.model.*,
                  language_model.lm_head.weight, vision_tower.vision_model.*, multi_modal_projector.*;
                  5.x's conversion_mapping.py maps them with `llava`: ^language_model.lm_head -> lm_head,
                  ^language_model -> model.language_model, ^vision_tower -> model.vision_tower; 3 shards
  llava-5x        the 5.x names (the model's own state_dict): model.language_model.*, model.vision_tower.*,
                  model.multi_modal_projector.*, lm_head.weight; Mixtral experts fused
                  (mlp.experts.gate_up_proj [E, 2I, D], down_proj [E, D, I]); BF16
  llava-saved     LlavaForConditionalGeneration.save_pretrained in transformers 5 (sharded by it)
  llava-repo      the original LLaVA / LLaVA-JP training repos (LlavaLlamaForCausalLM): model.* + lm_head,
                  model.mm_projector.0/.2 (nn.Sequential(Linear, GELU, Linear)),
                  model.vision_tower.vision_tower.vision_model.* (CLIPVisionTower wraps CLIPVisionModel);
                  a flat config with mm_* keys; F16
  fused-experts   (Mixtral only) the llm as MixtralForCausalLM's 5.x state_dict, experts fused
"""
import json
import os
import shutil
import sys

import struct
import zlib

import torch
from safetensors.torch import save_file
from tiny_weights import randomize
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, LlavaConfig,
                          LlavaForConditionalGeneration, MixtralConfig, MixtralForCausalLM, SiglipConfig, SiglipModel, SiglipVisionConfig,
                          SiglipVisionModel)
from transformers.utils.constants import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

WORDS = ["USER", "ASSISTANT", ":", "what", "colour", "is", "it", "?", "and", "the", "shape", "red", "green", "blue", "a", "square",
         "circle", "triangle", "describe", "image", "small", "large"]
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
RECORDS = [
    ("what colour is it ?", "red"),
    ("what is the shape ?", "a blue square"),
    ("describe the image", "a small green circle and a large red triangle"),
    ("what colour is the shape ?", "green"),
    ("what is it ?", "a circle"),
]
VOCAB = 32
FAMILIES = ["clip-llama", "siglip-mixtral"]


def tokenizer_files(out):
    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    assert len(vocab) <= VOCAB
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIALS)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}, f)
    return vocab


def write_png(file, rgb):
    """An 8-bit RGB PNG (no Pillow needed): rows with filter 0, one IDAT."""
    h, w = rgb.shape[0], rgb.shape[1]
    raw = b"".join(b"\x00" + bytes(rgb[y].flatten().tolist()) for y in range(h))
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    with open(file, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def read_png(file):
    """The pixels write_png wrote, [H, W, 3] uint8."""
    data = open(file, "rb").read()
    w, h = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows = [raw[y * (w * 3 + 1) + 1:(y + 1) * (w * 3 + 1)] for y in range(h)]
    assert all(raw[y * (w * 3 + 1)] == 0 for y in range(h)), "only filter 0 rows"
    return torch.tensor(list(b"".join(rows)), dtype=torch.uint8).reshape(h, w, 3)


def data_files(out, gen):
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    records = []
    for i, (q, a) in enumerate(RECORDS):
        write_png(os.path.join(out, "images", f"img{i}.png"), (torch.rand(16, 16, 3, generator=gen) * 255).to(torch.uint8))
        turns = [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]
        if i == 2:  # a second turn: the loss covers both replies, the accuracy the last one
            turns += [{"from": "human", "value": "what colour is it ?"}, {"from": "gpt", "value": "green and red"}]
        records.append({"id": f"r{i}", "image": f"img{i}.png", "conversations": turns})
    with open(os.path.join(out, "data.json"), "w") as f:
        json.dump(records, f, indent=1)


def configs(family, image_token):
    siglip = family.startswith("siglip")
    v = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=16, patch_size=8)
    vision = SiglipVisionConfig(**v) if siglip else CLIPVisionConfig(**v)
    t = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False)
    text = MixtralConfig(**t, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2) if siglip else LlamaConfig(**t, intermediate_size=64)
    llava = LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=image_token, vision_feature_layer=-2,
                        vision_feature_select_strategy="full" if siglip else "default", projector_hidden_act="gelu", image_seq_length=4)
    return vision, text, llava



def parts(model):
    """The model's 5.x state_dict split into vision (bare names), projector (linear_K.*) and llm (model.* + lm_head)."""
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    take = lambda prefix: {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    vision, proj = take("model.vision_tower."), take("model.multi_modal_projector.")
    llm = {f"model.{k}": v for k, v in take("model.language_model.").items()}
    llm["lm_head.weight"] = sd["lm_head.weight"]
    return vision, proj, llm


def unfuse(llm):
    """Fused Mixtral experts (5.x in memory) -> the per-expert names of the hub and 4.x (w1 = the gate half)."""
    out = {}
    for k, v in llm.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            layer, half = k[: -len("mlp.experts.gate_up_proj")], v.shape[1] // 2
            for e in range(v.shape[0]):
                out[f"{layer}block_sparse_moe.experts.{e}.w1.weight"] = v[e, :half].clone()
                out[f"{layer}block_sparse_moe.experts.{e}.w3.weight"] = v[e, half:].clone()
        elif k.endswith("mlp.experts.down_proj"):
            layer = k[: -len("mlp.experts.down_proj")]
            for e in range(v.shape[0]):
                out[f"{layer}block_sparse_moe.experts.{e}.w2.weight"] = v[e].clone()
        elif k.endswith("mlp.gate.weight"):
            out[k.replace("mlp.gate.weight", "block_sparse_moe.gate.weight")] = v
        else:
            out[k] = v
    return out


DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def save(folder, tensors, dtype="F32", shards=1, name="model.safetensors", config=None):
    os.makedirs(folder, exist_ok=True)
    t = {k: v.to(DTYPES[dtype]).contiguous() for k, v in tensors.items()}
    if config is not None:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
    if shards == 1:
        save_file(t, os.path.join(folder, name), metadata={"format": "pt"})
        return
    keys = sorted(t)
    weight_map = {}
    for s in range(shards):
        shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: t[k] for k in keys[s::shards]}
        save_file(part, os.path.join(folder, shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(v.numel() * v.element_size() for v in t.values())}, "weight_map": weight_map}, f, indent=1)


def as_4x(config):
    """A config as transformers 4.x wrote it: RoPE's base at the top (`rope_theta`), `torch_dtype`."""
    c = dict(config)
    rp = c.pop("rope_parameters", None)
    if isinstance(rp, dict):
        c["rope_theta"] = rp["rope_theta"]
    for key in ("text_config", "vision_config"):
        if isinstance(c.get(key), dict):
            c[key] = as_4x(c[key])
    if "dtype" in c:
        c["torch_dtype"] = c.pop("dtype")
    c["transformers_version"] = "4.46.3"
    return c


def saved_config(model, folder, **kwargs):
    model.save_pretrained(folder, **kwargs)
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f)


def program(family, components, weights, names):
    """main.pipe: `weights` per component; `names` the constructor calls (dims left to config.json)."""
    enc, llm = names
    return f"""// {family}: {components}. Generated by test/reference/hf_layouts.py.
import "std/vision"
import "std/projectors"
import "std/llm"
import "std/data"
import "std/train"

model m {{
  encoder vision = {enc} weights "{weights['vision']}"
  projector proj = mlp_gelu({weights.get('proj_args', '')}) weights "{weights['proj']}"
  llm lm = {llm} weights "{weights['lm']}"
  flow vision -> proj -> lm at "<image>"
}}

template qa_chat {{
  system: ""
  user: "USER : "
  assistant: "ASSISTANT : "
  separator: " "
}}

dataset qa = llava_json(file: "../data/data.json", images: "../data/images", template: "qa_chat", tokenizer: "../data/tokenizer.json")

stage evaluate {{
  model: m
  train: [proj]
  freeze: [vision, lm]
  data: qa
  optimizer: adamw(lr: 1e-3)
  batch: 2
  steps: 1
  max_length: 64
  precision: fp32
  devices: cpu
}}
"""


def build_family(root, family, seed):
    siglip = family.startswith("siglip")
    out = os.path.join(root, family)
    shutil.rmtree(out, ignore_errors=True)
    gen = torch.Generator().manual_seed(seed)
    data = os.path.join(out, "data")
    os.makedirs(data)
    vocab = tokenizer_files(data)
    data_files(data, gen)
    vcfg, tcfg, lcfg = configs(family, vocab["<image>"])
    model = LlavaForConditionalGeneration(lcfg)
    randomize(model, gen, bfloat16=True)
    vision, proj, llm5 = parts(model)
    llm = unfuse(llm5)
    VisionModel, TwoTower, TwoTowerConfig = (SiglipVisionModel, SiglipModel, SiglipConfig) if siglip else (CLIPVisionModel, CLIPModel, CLIPConfig)
    CausalLM = MixtralForCausalLM if siglip else LlamaForCausalLM
    enc = "siglip_vit()" if siglip else "clip_vit(select_layer: -2)"
    lm = "mixtral()" if siglip else "llama()"
    layouts = []

    def layout(name, what, weights, encoder=enc):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "main.pipe"), "w") as f:
            f.write(program(family, what, weights, (encoder, lm)))
        layouts.append({"name": name, "what": what})

    proj_args = "in: vision.hidden, out: lm.hidden"
    seq = {f"model.mm_projector.{2 * (int(k[len('linear_'):k.index('.')]) - 1)}.{k.split('.')[-1]}": v for k, v in proj.items()}
    siglip_select = "siglip_vit(select_layer: -2)" if siglip else enc

    # components-5x: transformers 5's own per-component writers
    d = os.path.join(out, "components-5x")
    v = VisionModel(vcfg)
    v.load_state_dict(vision)
    v.save_pretrained(os.path.join(d, "vision"))
    c = CausalLM(tcfg)
    c.load_state_dict(llm5)
    c.save_pretrained(os.path.join(d, "lm"))
    save(os.path.join(d, "proj"), seq, name="mm_projector.safetensors")
    layout("components-5x", "per-component folders as transformers 5.x writes them; the LLaVA repos' mm_projector file",
           {"vision": "vision", "proj": "proj/mm_projector.safetensors", "proj_args": proj_args, "lm": "lm"}, siglip_select)

    # components-4x: the names and config keys transformers 4.x wrote
    d = os.path.join(out, "components-4x")
    vconf = as_4x(saved_config(VisionModel(vcfg), os.path.join(d, "tmp-vision")))
    tconf = as_4x(saved_config(CausalLM(tcfg), os.path.join(d, "tmp-lm")))
    shutil.rmtree(os.path.join(d, "tmp-vision"))
    shutil.rmtree(os.path.join(d, "tmp-lm"))
    save(os.path.join(d, "vision"), {f"vision_model.{k}": x for k, x in vision.items()}, "F16", config=vconf)
    save(os.path.join(d, "lm"), llm, "F16", shards=2, config=tconf)
    save(d, {f"multi_modal_projector.{k}": x for k, x in proj.items()}, "BF16", name="projector.safetensors")
    layout("components-4x", "per-component folders with transformers 4.x names and configs (F16, the llm sharded); a projector file with LLaVA's names",
           {"vision": "vision", "proj": "projector.safetensors", "proj_args": proj_args, "lm": "lm"}, siglip_select)

    # two-tower: the hub's CLIPModel / SiglipModel (text tower ignored)
    d = os.path.join(out, "two-tower")
    small_text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=50, max_position_embeddings=16)
    two = TwoTower(TwoTowerConfig(text_config=small_text, vision_config=vcfg.to_dict()))
    randomize(two, gen, bfloat16=True)
    sd = {k: x.detach().clone().contiguous() for k, x in two.state_dict().items()}
    assert any(k.startswith("vision_model.") for k in sd) and any(k.startswith("text_model.") for k in sd)
    sd.update({f"vision_model.{k}": x for k, x in vision.items()})
    cfg2 = saved_config(two, os.path.join(d, "tmp"))
    shutil.rmtree(os.path.join(d, "tmp"))
    save(os.path.join(d, "vision"), sd, "BF16", config=cfg2)
    c.save_pretrained(os.path.join(d, "lm"))
    save(d, proj, name="projector.safetensors")
    layout("two-tower", "the hub's two-tower checkpoint (BF16, text tower ignored); a projector file with bare names",
           {"vision": "vision", "proj": "projector.safetensors", "proj_args": proj_args, "lm": "lm"}, siglip_select)

    # LLaVA folders: every component points at the same folder and takes its part
    llava_cfg = saved_config(model, os.path.join(out, "llava-saved"), max_shard_size="40KB")  # transformers shards it
    names4 = {**{f"language_model.{k}": x for k, x in llm.items() if k != "lm_head.weight"}, "language_model.lm_head.weight": llm["lm_head.weight"],
              **{f"vision_tower.vision_model.{k}": x for k, x in vision.items()}, **{f"multi_modal_projector.{k}": x for k, x in proj.items()}}
    save(os.path.join(out, "llava-4x"), names4, "F32", shards=3, config=as_4x(llava_cfg))
    names5 = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save(os.path.join(out, "llava-5x"), names5, "BF16", config=llava_cfg)
    whole = {"vision": "..", "proj": "..", "lm": ".."}
    for name, what in [("llava-4x", "LlavaForConditionalGeneration with transformers 4.x names (3 shards)"),
                       ("llava-5x", "LlavaForConditionalGeneration with transformers 5.x names (BF16)"),
                       ("llava-saved", "LlavaForConditionalGeneration.save_pretrained (transformers 5)")]:
        layout(name, what, {k: f"../{name}" for k in whole}, "siglip_vit()" if siglip else "clip_vit()")
    # transformers 5 writes per-expert Mixtral names: the split above must be the one it writes
    from safetensors import safe_open
    saved = {}
    folder = os.path.join(out, "llava-saved")
    for f in os.listdir(folder):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(folder, f), "pt") as s:
                saved.update({k: s.get_tensor(k) for k in s.keys()})
    for k, x in names4.items():  # 5.x writes the 4.x names, but its vision tower has no vision_model module
        k = k.replace("vision_tower.vision_model.", "vision_tower.")
        assert torch.equal(saved[k], x), f"{k}: not what transformers saved"

    # llava-repo: the original LLaVA / LLaVA-JP training repos
    repo_cfg = as_4x(tconf)
    repo_cfg.update({"architectures": ["LlavaMixtralForCausalLM" if siglip else "LlavaLlamaForCausalLM"], "model_type": "llava_mixtral" if siglip else "llava_llama",
                     "mm_vision_tower": "google/siglip-base-patch16-224" if siglip else "openai/clip-vit-large-patch14-336", "mm_hidden_size": 16,
                     "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "cls_patch" if siglip else "patch",
                     "use_mm_proj": True})
    save(os.path.join(out, "llava-repo"), {**llm, **seq, **{f"model.vision_tower.vision_tower.vision_model.{k}": x for k, x in vision.items()}}, "F16", config=repo_cfg)
    dims = "image: 16, patch: 8, hidden: 16, layers: 2, heads: 2, mlp: 32"
    layout("llava-repo", "the original LLaVA / LLaVA-JP repo layout (F16); the vision tower's dims given (its config is not in the folder)",
           {k: "../llava-repo" for k in whole}, f"siglip_vit({dims})" if siglip else f"clip_vit({dims})")

    if siglip:
        d = os.path.join(out, "fused-experts")
        save(os.path.join(d, "lm"), llm5, "F32", config=tconf)
        save(os.path.join(d, "vision"), vision, "F32", config=vconf)
        save(d, seq, name="mm_projector.safetensors")
        layout("fused-experts", "the llm as a transformers 5 state_dict (Mixtral experts fused)",
               {"vision": "vision", "proj": "mm_projector.safetensors", "proj_args": proj_args, "lm": "lm"}, siglip_select)

    with open(os.path.join(out, "layouts.json"), "w") as f:
        json.dump(layouts, f, indent=1)


def reference(folder, result_file):
    with open(result_file) as f:
        result = json.load(f)
    with open(os.path.join(folder, "data", "data.json")) as f:
        data = json.load(f)
    model = LlavaForConditionalGeneration.from_pretrained(os.path.join(folder, "llava-saved"), attn_implementation="eager", dtype=torch.float32)
    model.train(False)
    recs = result["details"]
    T = max(len(r["input_ids"]) for r in recs)
    ids = torch.full((len(recs), T), 3, dtype=torch.long)
    labels = torch.full((len(recs), T), -100, dtype=torch.long)
    mask = torch.zeros((len(recs), T), dtype=torch.long)
    for b, r in enumerate(recs):
        n = len(r["input_ids"])
        ids[b, :n] = torch.tensor(r["input_ids"])
        labels[b, :n] = torch.tensor(r["labels"])
        mask[b, :n] = 1
        if r["image_start"] >= 0:  # the image's positions hold the image token (transformers finds them by id)
            ids[b, r["image_start"]:r["image_start"] + 4] = model.config.image_token_id
    # The images are already the tower's size: CLIP's and SigLIP's processors only rescale and normalise them
    # (with their default means and deviations, the constants below).
    siglip = model.config.vision_config.model_type.startswith("siglip")
    mean, std = (IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD) if siglip else (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    images = [read_png(os.path.join(folder, "data", "images", data[r["index"]]["image"])) for r in recs if r["image_start"] >= 0]
    pixels = torch.stack([(im.permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None] for im in images])
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pixels, attention_mask=mask, labels=labels)
    last = [out.logits[b, len(r["input_ids"]) - 1].tolist() for b, r in enumerate(recs)]
    print(json.dumps({"loss": out.loss.item(), "last_logits": last}))


def main():
    if sys.argv[1] == "build":
        for i, family in enumerate(FAMILIES):
            build_family(sys.argv[2], family, seed=1 + i)
    elif sys.argv[1] == "reference":
        reference(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
