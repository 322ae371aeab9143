"""Each per-component folder of a pipec checkpoint, loaded by transformers on its own, computes what the
same component computes inside the LLaVA folder `pipec export --target hf` wrote (which check_llava.py
compares with pipec itself):

    python check_components.py CHECKPOINT_DIR EXPORT_DIR VISION LLM PROJECTOR
    (or through check_llava.py --components CHECKPOINT_DIR VISION LLM PROJECTOR, one Python start for both)

vision: CLIPVisionModel / SiglipVisionModel from its folder; its selected hidden states, through the
projector loaded from its folder into transformers' LlavaMultiModalProjector (the projector has no class
of its own: docs/export.md), against the LLaVA's image features. llm: AutoModelForCausalLM from its folder
against the LLaVA's logits on text. Prints one JSON object.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, CLIPVisionModel, LlavaForConditionalGeneration, SiglipVisionModel
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector


def problems(info):
    return {k: [str(x) for x in v] for k, v in info.items() if v}


def check(ckpt, export_dir, vision_name, llm_name, proj_name):
    out = {}
    llava = LlavaForConditionalGeneration.from_pretrained(export_dir, attn_implementation="eager").eval()
    cfg = llava.config
    torch.manual_seed(0)

    vdir = os.path.join(ckpt, vision_name)
    vcfg = json.load(open(os.path.join(vdir, "config.json")))
    cls = SiglipVisionModel if vcfg["model_type"] == "siglip_vision_model" else CLIPVisionModel
    vision, info = cls.from_pretrained(vdir, output_loading_info=True, attn_implementation="eager")
    out["vision_class"] = type(vision).__name__
    out["vision_loading"] = problems(info)

    pdir = os.path.join(ckpt, proj_name)
    try:
        AutoConfig.from_pretrained(pdir)
        out["projector_autoconfig"] = "loaded"
    except ValueError as e:
        out["projector_autoconfig"] = str(e).splitlines()[0]
    out["projector_has_from_pretrained"] = hasattr(LlavaMultiModalProjector, "from_pretrained")
    # docs/export.md: the projector folder loads into LLaVA's projector module
    proj = LlavaMultiModalProjector(cfg)
    state = {k[len("multi_modal_projector."):]: v for k, v in load_file(os.path.join(pdir, "model.safetensors")).items()}
    missing, unexpected = proj.load_state_dict(state, strict=False)
    out["projector_missing"], out["projector_unexpected"] = list(missing), list(unexpected)

    size = cfg.vision_config.image_size
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states[cfg.vision_feature_layer]
        if cfg.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]
        ours = proj(hidden) if not missing else None
        theirs = torch.stack(llava.model.get_image_features(pixel_values=pixels).pooler_output)
    out["vision_tokens"] = list(hidden.shape)
    out["image_features_diff"] = None if ours is None else float((ours - theirs).abs().max())
    out["image_features_scale"] = float(theirs.abs().max())

    ldir = os.path.join(ckpt, llm_name)
    lm, info = AutoModelForCausalLM.from_pretrained(ldir, output_loading_info=True, attn_implementation="eager")
    out["llm_class"] = type(lm).__name__
    out["llm_loading"] = problems(info)
    ids = torch.randint(5, cfg.text_config.vocab_size, (2, 12))
    with torch.no_grad():
        a = lm(input_ids=ids).logits
        b = llava(input_ids=ids).logits
    out["llm_logits_diff"] = float((a - b).abs().max())
    out["llm_logits_scale"] = float(b.abs().max())
    return out


if __name__ == "__main__":
    print(json.dumps(check(*sys.argv[1:6])))
