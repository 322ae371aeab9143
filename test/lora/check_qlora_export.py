# QLoRA in the exported program without a GPU: which way train.py's qlora() goes (CPU, CUDA without
# bitsandbytes, sharded: a note, the base in fp32), and model.py's quantize_component with a stand-in
# for bitsandbytes whose layers compute exactly (so what is checked is the plumbing: which weights are
# taken, that Named.linear calls them with the bias and the LoRA update, that checkpoints still get the
# fp32 base). Prints one JSON line.
import json
import sys
import types

import torch
from torch import nn

sys.path.insert(0, sys.argv[1])
import model as M  # noqa: E402
import train  # noqa: E402

stage = dict(train.STAGES[0])
name = stage["model"]
sys.modules.pop("bitsandbytes", None)
sys.modules["bitsandbytes"] = None  # import bitsandbytes -> ImportError, as on a machine without it
out = {
    "cpu": train.qlora(M.MODELS[name](), stage, torch.device("cpu")),
    "cuda_without_bnb": train.qlora(M.MODELS[name](), stage, torch.device("cuda")),
    "cuda_sharded": train.qlora(M.MODELS[name](), stage, torch.device("cuda"), sharded=True),
    "trained_base": train.qlora(M.MODELS[name](), dict(stage, train=stage["train"] + [M.MODELS[name].spec["adapters"][0]["component"]]), torch.device("cpu")),
}


class Linear4bit(nn.Linear):  # stand-in: bitsandbytes' constructor, exact arithmetic
    def __init__(self, i, o, bias=True, compute_dtype=None, quant_type="fp4"):
        super().__init__(i, o, bias=bias)
        self.quant_type = quant_type

    def to(self, *args, **kwargs):  # stays on the CPU (this machine has no GPU)
        return self


fake = types.SimpleNamespace(__version__="stand-in", nn=types.SimpleNamespace(
    Linear4bit=Linear4bit, Params4bit=lambda w, requires_grad=False, quant_type="fp4": nn.Parameter(w.clone(), requires_grad=requires_grad)))
m = M.MODELS[name]()
m.init_fresh(3)
with torch.no_grad():
    for ad in m.adapters.values():
        for n, p in ad.named_parameters():
            p.normal_(0, 0.1)  # a trained-looking adapter (B != 0)
ids = torch.tensor([[1, 5, 17, 33, 64, 2, 9, 100]])
mask = torch.ones_like(ids)
ad = list(m.adapters.values())[0]
llm = m.components[ad.component]
before = llm(llm.embed(ids), mask, []).detach()
weights = {n: p.detach().clone() for n, p in llm.named_parameters()}
out["stand_in"] = train.qlora(m, stage, torch.device("cuda"), bnb=fake)  # takes the CUDA path; the stand-in stays on the CPU
after = llm(llm.embed(ids), mask, []).detach()
tensors = m.component_tensors(ad.component)
out["quantized"] = sorted(llm.quantized)
out["logits_diff"] = (after - before).abs().max().item()
out["checkpoint_same"] = sorted(tensors) == sorted(weights) and all(torch.equal(tensors[n], weights[n]) for n in weights)
ad.scale, scale = 0.0, ad.scale
out["adapter_effect"] = (llm(llm.embed(ids), mask, []).detach() - after).abs().max().item()  # the LoRA update still runs over the quantized base
ad.scale = scale
out["freed"] = sorted(n for n, p in llm.named_parameters() if p.numel() == 0)
print(json.dumps(out))
