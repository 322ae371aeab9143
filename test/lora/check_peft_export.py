# A checkpoint of the exported PyTorch trainer (pipec export --target torch) read three ways: the exported
# model.py's own model (components and adapters loaded from the checkpoint), PEFT (LlamaForCausalLM over
# the llm's folder + PeftModel.from_pretrained over the adapter's folder) and, optionally, the folder
# `pipec merge` wrote, loaded by transformers alone. Logits of the llm on the given tokens (text only);
# prints one JSON line of max absolute differences.
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import LlamaForCausalLM

args = json.loads(sys.argv[1])
sys.path.insert(0, args["export"])
from model import MODELS  # noqa: E402

ids = torch.tensor(args["ids"], dtype=torch.long)
mask = torch.ones_like(ids)
exported = MODELS[args["model"]]().eval()
for name, _ in exported.owners():
    exported.load_component(name, os.path.join(args["checkpoint"], name))
llm = exported.components[args["component"]]
with torch.no_grad():
    mine = llm(llm.embed(ids), mask, []).double()
    exported.adapters[args["adapter"].replace(".", "-")].scale = 0.0  # the base alone, for the size of the adapter's effect
    base_only = llm(llm.embed(ids), mask, []).double()
base = LlamaForCausalLM.from_pretrained(os.path.join(args["checkpoint"], args["component"]), dtype=torch.float32).eval()
model = PeftModel.from_pretrained(base, os.path.join(args["checkpoint"], args["adapter"])).eval()
with torch.no_grad():
    peft_logits = model(input_ids=ids).logits.double()
out = {
    "peft_vs_export": (peft_logits - mine).abs().max().item(),
    "adapter_effect": (mine - base_only).abs().max().item(),
    "logit_scale": mine.abs().max().item(),
    "lora_modules": sorted({n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}),
}
if args.get("merged"):
    merged = LlamaForCausalLM.from_pretrained(os.path.join(args["merged"], args["component"]), dtype=torch.float32).eval()
    with torch.no_grad():
        out["merged_vs_export"] = (merged(input_ids=ids).logits.double() - mine).abs().max().item()
print(json.dumps(out))
