"""Loads a folder written by `pipec export RUN --target hf` the way a transformers user would and compares
it with what pipec computed (test/e2e/export-hf.test.ts writes REF_JSON from pipec's runtime):

    python check_llava.py EXPORT_DIR REF_JSON [--components CHECKPOINT_DIR VISION LLM PROJECTOR]

REF_JSON holds a batch as pipec collated it (ids with the image positions, labels, mask, normalised
pixels), pipec's loss and logits on it, and records (image bytes + conversation) with the ids and pixels
pipec's data pipeline made of them. Prints one JSON object of measurements; asserts only what must hold
exactly (no missing or unexpected keys, the classes transformers picks). With --components it also runs
check_components.py's checks of the run's per-component folders (under "components").
"""
import json
import sys

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration


def loading_problems(info):
    return {k: [str(x) for x in v] for k, v in info.items() if v}


def main(export_dir, ref_file):
    ref = json.load(open(ref_file))
    out = {}
    model, info = LlavaForConditionalGeneration.from_pretrained(export_dir, output_loading_info=True, attn_implementation="eager")
    out["loading"] = loading_problems(info)
    auto, auto_info = AutoModelForImageTextToText.from_pretrained(export_dir, output_loading_info=True)
    out["auto_class"] = type(auto).__name__
    out["auto_loading"] = loading_problems(auto_info)
    model.eval()

    b = ref["batch"]
    B, T = b["shape"]
    ids = torch.tensor(b["input_ids"]).reshape(B, T)
    mask = torch.tensor(b["attention_mask"]).reshape(B, T)
    labels = torch.tensor(b["labels"]).reshape(B, T)
    pixels = torch.tensor(b["pixels"], dtype=torch.float32).reshape(b["pixel_shape"])
    with torch.no_grad():
        r = model(input_ids=ids, pixel_values=pixels, attention_mask=mask, labels=labels)
    want = torch.tensor(ref["pipec"]["logits"], dtype=torch.float32).reshape(ref["pipec"]["logits_shape"])
    real = mask.bool()
    out["image_positions"] = int((ids == model.config.image_token_index).sum())
    out["loss"] = float(r.loss)
    out["pipec_lm_loss"] = ref["pipec"]["lm_loss"]
    out["loss_diff"] = abs(float(r.loss) - ref["pipec"]["lm_loss"])
    out["max_logit_diff"] = float((r.logits[real] - want[real]).abs().max())
    out["max_abs_logit"] = float(want[real].abs().max())

    processor = AutoProcessor.from_pretrained(export_dir)
    out["processor_class"] = type(processor).__name__
    out["image_processor_class"] = type(processor.image_processor).__name__
    out["processor_image_token_id"] = processor.image_token_id
    out["config_image_token_index"] = model.config.image_token_index
    checks = []
    if ref.get("records"):
        from PIL import Image
        for rec in ref["records"]:
            img = Image.frombytes("RGB", (rec["width"], rec["height"]), bytes(rec["rgb"]))
            conv = [{"role": t["role"], "content": t["text"]} for t in rec["turns"]]
            text = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=rec.get("generation", False))
            # the same conversation in the processor's own form: an image part, then the text
            marker = processor.image_token + "\n"
            parts = [{"role": t["role"], "content": ([{"type": "image"}, {"type": "text", "text": t["text"][len(marker):]}]
                                                     if t["text"].startswith(marker) else [{"type": "text", "text": t["text"]}])} for t in rec["turns"]]
            text_parts = processor.apply_chat_template(parts, tokenize=False, add_generation_prompt=rec.get("generation", False))
            inputs = processor(images=img, text=text, return_tensors="pt")
            got = inputs["input_ids"][0].tolist()
            px = inputs["pixel_values"][0]
            want_px = torch.tensor(rec["pixels"], dtype=torch.float32).reshape(px.shape)
            checks.append({
                "text": text, "ids_equal": got == rec["ids"], "ids": got, "pipec_ids": rec["ids"],
                "parts_text_equal": text_parts == text, "pipec_text_equal": text == rec.get("text", text),
                "max_pixel_diff": float((px - want_px).abs().max()),
            })
    out["records"] = checks

    if ref.get("generate"):
        from PIL import Image
        out["generate"] = []
        for g in ref["generate"]:
            img = Image.open(g["image"])
            conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": g["prompt"]}]}]
            text = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
            inputs = processor(images=img, text=text, return_tensors="pt")
            with torch.no_grad():
                seq = model.generate(**inputs, max_new_tokens=g["max_new_tokens"], do_sample=False)
            new = seq[0][inputs["input_ids"].shape[1]:].tolist()
            if new and new[-1] == model.generation_config.eos_token_id:
                new = new[:-1]  # pipec stops at EOS without returning it
            out["generate"].append({"prompt_ids": inputs["input_ids"][0].tolist(), "tokens": new, "text": processor.decode(new, skip_special_tokens=True)})
    return out


if __name__ == "__main__":
    result = main(*sys.argv[1:3])
    if "--components" in sys.argv:
        import os
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from check_components import check
        at = sys.argv.index("--components")
        ckpt, vision, llm, proj = sys.argv[at + 1:at + 5]
        result["components"] = check(ckpt, sys.argv[1], vision, llm, proj)
    print(json.dumps(result))
