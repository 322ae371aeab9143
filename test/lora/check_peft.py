# pipec's LoRA checkpoint read by PEFT: the llm component's folder of a checkpoint with
# LlamaForCausalLM, its adapter folder with PeftModel.from_pretrained, logits on the given tokens
# compared with pipec's (a safetensors file, "logits" [B, T, V]); optionally the folder `pipec merge`
# wrote, loaded by transformers alone. Prints one JSON line of max absolute differences.
import json
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

args = json.loads(sys.argv[1])
ids = torch.tensor(args["ids"], dtype=torch.long)
pipec = load_file(args["logits"])["logits"].double()
base = LlamaForCausalLM.from_pretrained(args["base"], dtype=torch.float32).eval()
with torch.no_grad():
    base_logits = base(input_ids=ids).logits.double()
model = PeftModel.from_pretrained(base, args["adapter"]).eval()
lora_modules = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n})
with torch.no_grad():
    peft_logits = model(input_ids=ids).logits.double()
out = {
    "peft_vs_pipec": (peft_logits - pipec).abs().max().item(),
    "adapter_effect": (peft_logits - base_logits).abs().max().item(),
    "logit_scale": pipec.abs().max().item(),
    "lora_modules": lora_modules,
    "r": model.peft_config["default"].r,
    "alpha": model.peft_config["default"].lora_alpha,
}
if args.get("merged"):
    merged = LlamaForCausalLM.from_pretrained(args["merged"], dtype=torch.float32).eval()
    with torch.no_grad():
        merged_logits = merged(input_ids=ids).logits.double()
    out["merged_vs_peft"] = (merged_logits - peft_logits).abs().max().item()
    out["merged_vs_pipec"] = (merged_logits - pipec).abs().max().item()
print(json.dumps(out))
