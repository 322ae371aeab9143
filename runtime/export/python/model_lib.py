import json
import math
import os
import re
import struct
import sys

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

# --------------------------------------------------------------------------------------------------
# safetensors: the package when it is importable, else this minimal reader/writer (F32 written;
# F32, F16, BF16 and F64 read, as pipec's runtime/weights/safetensors.ts).
# --------------------------------------------------------------------------------------------------
try:
    from safetensors.torch import load_file as _st_load, save_file as _st_save
except ImportError:  # torch alone is enough
    _st_load = None
    _st_save = None

_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2), "F64": (torch.float64, 8)}


def read_safetensors(path):
    """name -> float32 tensor (CPU)."""
    if _st_load is not None:
        return {k: v.float() for k, v in _st_load(path).items()}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError("tensor %s has dtype %s; only F32, F16, BF16 and F64 load" % (name, info["dtype"]))
        dtype, _ = _DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=dtype) if end > begin else torch.zeros(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).float()
    return out


def tensor_bytes(t):
    """float32 little-endian bytes of a CPU tensor (numpy when present, else the array module). A copy goes
    to numpy: numpy shares its storage and pins its size, and FSDP frees gathered storage by resizing it."""
    t = t.detach().float().cpu().reshape(-1).clone()
    try:
        import numpy  # noqa: F401
        return t.numpy().astype("<f4").tobytes()
    except ImportError:
        import array
        a = array.array("f", t.tolist())
        if sys.byteorder != "little":
            a.byteswap()
        return a.tobytes()


def write_safetensors(path, tensors, metadata=None):
    """Writes float32 tensors with sorted names and an 8-byte aligned header (as pipec writes them)."""
    meta = {"format": "pt"}
    meta.update(metadata or {})
    names = sorted(tensors)
    if _st_save is not None:
        _st_save({k: tensors[k].detach().float().contiguous().cpu() for k in names}, path, metadata=meta)
        return
    header = {"__metadata__": meta}
    blobs = []
    offset = 0
    for name in names:
        t = tensors[name].detach().float().contiguous().cpu()
        b = tensor_bytes(t)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text.encode("utf-8")) % 8) % 8)
    hb = text.encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())


def read_weights_dir(folder):
    """Every tensor of a Hugging Face weights folder (model.safetensors or its shards)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            out.update(read_safetensors(os.path.join(folder, name)))
    return out


# --------------------------------------------------------------------------------------------------
# pipec's initialisation (runtime/params.ts, runtime/random.ts): mulberry32 streams derived per tensor
# name from the stage seed, N(0, 0.02) by Box-Muller, norms 1, biases 0, a LoRA A uniform and its B
# zeros. Bit-compatible with pipec, but the normal draws are a Python loop per element: use init="torch"
# (torch.normal, same distribution) for large models. Uniform draws (LoRA's A, its dropout masks) are
# computed as one tensor (pipec_uniform).
# --------------------------------------------------------------------------------------------------
_M32 = 0xFFFFFFFF


def _imul(a, b):
    return (a * b) & _M32


class PipecRng:
    def __init__(self, s):
        self.s = s & _M32

    def next(self):
        self.s = (self.s + 0x6D2B79F5) & _M32
        t = self.s
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & _M32
        return ((t ^ (t >> 14)) & _M32) / 4294967296.0

    def normal(self):
        u = max(self.next(), 1e-12)
        v = self.next()
        return math.sqrt(-2.0 * math.log(u)) * math.cos(2.0 * math.pi * v)

    def int(self, n):
        return int(math.floor(self.next() * n))

    def shuffle(self, xs):
        for i in range(len(xs) - 1, 0, -1):
            j = self.int(i + 1)
            xs[i], xs[j] = xs[j], xs[i]
        return xs

    @staticmethod
    def derive(seed, label):
        h = (seed ^ 0x9E3779B9) & _M32
        for ch in label:
            h = _imul(h ^ ord(ch), 0x01000193)
        return PipecRng(h)


_GOLDEN = 0x6D2B79F5


def _imul_t(a, b):
    """Math.imul on int64 tensors of uint32 values (products split in 16-bit halves: no int64 overflow)."""
    a_lo, a_hi = a & 0xFFFF, a >> 16
    b_lo, b_hi = b & 0xFFFF, b >> 16
    return (a_lo * b_lo + (((a_hi * b_lo + a_lo * b_hi) & 0xFFFF) << 16)) & _M32


def pipec_uniform(seed, label, n, device=None):
    """The first n draws of PipecRng.derive(seed, label).next(), as a float64 tensor, computed at once: the
    generator's state after k draws is s0 + k * 0x6D2B79F5, so every draw is a hash of its index (the
    same integers as the loop, hence the same values bit for bit)."""
    s0 = PipecRng.derive(seed, label).s
    k = torch.arange(1, n + 1, dtype=torch.int64, device=device)
    t = (s0 + k * _GOLDEN) & _M32
    t = _imul_t(t ^ (t >> 15), t | 1)
    t = t ^ ((t + _imul_t(t ^ (t >> 7), t | 61)) & _M32)
    return ((t ^ (t >> 14)) & _M32).double() / 4294967296.0


def init_kind(name):
    if name.endswith(".lora_A.weight"):
        return "lora_a"
    if name.endswith(".lora_B.weight"):
        return "zeros"
    if name.endswith(".bias") or name.endswith("_bias"):
        return "zeros"
    if _NORM_WEIGHT.search(name):
        return "ones"
    return "normal"


_NORM_WEIGHT = re.compile(r"(norm|layernorm|layrnorm|layer_norm)[^.]*\.weight$")


def init_std(attrs, shape):
    """runtime/params.ts initStd: He-normal for a cnn kernel (init "he"), else the component's init_std."""
    if attrs.get("init") == "he" and len(shape) == 4:
        return math.sqrt(2.0 / (shape[1] * shape[2] * shape[3]))
    s = attrs.get("init_std")
    return s if isinstance(s, (int, float)) and not isinstance(s, bool) else 0.02


def initial_value(name, shape, seed, mode="pipec", std=0.02):
    kind = init_kind(name)
    if kind == "ones":
        return torch.ones(shape)
    if kind == "zeros":
        return torch.zeros(shape)
    n = 1
    for s in shape:
        n *= s
    if kind == "lora_a":  # PEFT's kaiming_uniform_(a = sqrt(5)): U(-1/sqrt(in), 1/sqrt(in)), from pipec's stream in both modes
        bound = 1.0 / math.sqrt(shape[1])
        return ((2.0 * pipec_uniform(seed, name, n) - 1.0) * bound).float().reshape(shape)
    if mode == "torch":
        g = torch.Generator().manual_seed((seed * 1000003 + sum(map(ord, name))) & 0x7FFFFFFF)
        return torch.normal(0.0, std, tuple(shape), generator=g)
    rng = PipecRng.derive(seed, name)
    return torch.tensor([rng.normal() * std for _ in range(n)], dtype=torch.float64).float().reshape(shape)


# --------------------------------------------------------------------------------------------------
# Building blocks (runtime/ops/nn.ts). Shapes: B batch, T sequence, D hidden, H heads, d head size.
# --------------------------------------------------------------------------------------------------
NEG_INF = -1e9


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    xc = x - mean
    var = xc.pow(2).mean(-1, keepdim=True)
    return xc * torch.rsqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def gelu(x):  # exact (erf): LLaVA's projector
    return F.gelu(x)


def gelu_tanh(x):  # SigLIP's gelu_pytorch_tanh
    return F.gelu(x, approximate="tanh")


def quick_gelu(x):  # CLIP
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": gelu, "gelu_tanh": gelu_tanh, "quick_gelu": quick_gelu, "silu": F.silu}


def attention(q, k, v, bias=None):
    """q, k, v: [B, H, T, d]; bias [B, 1, Tq, Tk] (0 visible, -1e9 hidden) -> [B, H, Tq, d].
    In float32 torch's fused kernel (torch >= 2.0; what transformers' sdpa attention runs), the same softmax of
    the same scores; under autocast (fp16/bf16 q) the written-out form, whose scores + bias is computed in
    float32 (-1e9 would overflow fp16)."""
    if q.dtype == torch.float32 and hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if bias is not None:
        scores = scores + bias
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def causal_bias(mask):
    """Right-padded causal attention: key j visible to query i when j <= i and j is not padding. mask [B, T]."""
    T = mask.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()
    allowed = causal[None, None, :, :] & (mask[:, None, None, :] != 0)
    zero = torch.zeros((), device=mask.device)
    return torch.where(allowed, zero, torch.full((), NEG_INF, device=mask.device))


def rope_tables(T, d, theta, device):
    """cos, sin [T, d] in the rotate_half layout, computed in float64 like pipec, then float32."""
    half = d // 2
    t = torch.arange(T, dtype=torch.float64)[:, None]
    inv = torch.tensor([theta ** ((2 * i) / d) for i in range(half)], dtype=torch.float64)[None, :]
    angle = t / inv
    cos = torch.cat([angle.cos(), angle.cos()], dim=1).float().to(device)
    sin = torch.cat([angle.sin(), angle.sin()], dim=1).float().to(device)
    return cos, sin


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def split_heads(x, heads):
    B, T, HD = x.shape
    return x.view(B, T, heads, HD // heads).transpose(1, 2)  # [B, H, T, d]


def merge_heads(x):
    B, H, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, H * d)


# --------------------------------------------------------------------------------------------------
# Components. Each owns its parameters under their Hugging Face names (named_parameters() yields
# exactly the names pipec's checkpoints use) and reads them with self.p(name), as pipec's ops do.
# Each layer (vision_model.encoder.layers.i, model.layers.i) is a module of its own whose forward runs
# it, so that FSDP can shard a layer and gather it while it runs (train.py --fsdp).
# --------------------------------------------------------------------------------------------------
class Named(nn.Module):
    """Parameters registered under dotted names, read back with p(name). p() walks attributes rather than
    calling get_parameter: under FSDP a parameter is a plain tensor view while its unit runs.
    prefix: the module's path inside its component ("model.layers.3."), so that linear() knows the full
    name of a linear layer; lora: the component's adapted linear layers (full name -> Adapter), a plain
    dict, so the adapters are not registered twice."""

    LAYERS = None  # (pattern of a layer's module path, its class), in the subclasses that have layers
    prefix = ""
    lora = {}
    quantized = {}

    def _register(self, name, param):
        parts = name.split(".")
        mod = self
        for k, part in enumerate(parts[:-1]):
            if part not in mod._modules:
                path = ".".join(parts[: k + 1])
                layer = self.LAYERS is not None and re.fullmatch(self.LAYERS[0], path)
                if layer:
                    mod.add_module(part, self.LAYERS[1](self.op, self.attrs))
                    mod._modules[part].prefix = path + "."
                else:
                    mod.add_module(part, nn.Module())
            mod = mod._modules[part]
        mod.register_parameter(parts[-1], param)

    def linear(self, x, module, bias=True):
        """y = x W^T (+ b) for linear layer `module` (relative to this module), plus its LoRA update where an
        adapter targets it (lora_linear): every linear layer of the components goes through here, as every
        one of pipec's goes through runtime/ops/lora.ts's adaptedLinear."""
        b = self.p(module + ".bias") if bias else None
        full = self.prefix + module
        q = self.quantized.get(full)  # QLoRA: the weight held by bitsandbytes (quantize_component)
        y = F.linear(x, self.p(module + ".weight"), b) if q is None else (q(x) if b is None else q(x) + b)
        ad = self.lora.get(full)
        return y if ad is None else lora_linear(ad, full, x, y)

    def p(self, name):
        mod = self
        parts = name.split(".")
        for part in parts[:-1]:
            mod = getattr(mod, part)
        return getattr(mod, parts[-1])

    def a(self, key, default=None):
        v = self.attrs.get(key, default)
        if v is None:
            raise KeyError("attribute %r is missing" % key)
        return v


class Layer(Named):
    """One layer of a component, reading its parameters by their names relative to it."""

    def __init__(self, op, attrs):
        super().__init__()
        self.op, self.attrs = op, attrs


class Component(Named):
    checkpoint_layers = False  # a stage's gradient_checkpointing: PipeModel.gradient_checkpointing_enable()

    def __init__(self, name, op, attrs, tensors):
        super().__init__()
        self.component = name
        self.op = op
        self.attrs = attrs
        self.param_names = []
        for pname, shape in tensors:
            self._register(pname, nn.Parameter(torch.zeros(shape)))
            self.param_names.append(pname)

    def has(self, name):
        return name in self.param_names

    def run_layer(self, layer, *args):
        """layer(*args); under gradient checkpointing, while training, its activations are recomputed in
        backward instead of kept (as pipec's runtime/ops/checkpoint.ts). Non-reentrant: the weights' gradients
        and the MoE router's probabilities, which the aux loss reads outside the layer, flow as without it."""
        if self.checkpoint_layers and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)


class VisionLayer(Layer):
    """A pre-LayerNorm ViT block (CLIP / SigLIP): attention then MLP, each with a residual."""

    def forward(self, x, act, heads, eps):
        p, lin = self.p, self.linear
        h = layer_norm(x, p("layer_norm1.weight"), p("layer_norm1.bias"), eps)
        q = split_heads(lin(h, "self_attn.q_proj"), heads)
        k = split_heads(lin(h, "self_attn.k_proj"), heads)
        v = split_heads(lin(h, "self_attn.v_proj"), heads)
        x = x + lin(merge_heads(attention(q, k, v)), "self_attn.out_proj")
        h2 = layer_norm(x, p("layer_norm2.weight"), p("layer_norm2.bias"), eps)
        return x + lin(act(lin(h2, "mlp.fc1")), "mlp.fc2")


class VisionEncoder(Component):
    """vit / clip_vit (class token, pre-LayerNorm, quick_gelu) and siglip_vit (no class token, gelu tanh).
    Returns hidden_states[select_layer] (0 = embeddings), before post_layernorm; drops the class token
    unless select == "cls_patch" (runtime/ops/vit.ts)."""

    LAYERS = (r"vision_model\.encoder\.layers\.\d+", VisionLayer)

    def forward(self, pixels):
        siglip = self.op == "siglip_vit"
        act = ACTIVATIONS["gelu_tanh" if siglip else "quick_gelu"]
        patch, hidden, layers, heads = self.a("patch"), self.a("hidden"), self.a("layers"), self.a("heads")
        eps = self.a("norm_eps", 1e-5)
        cls = self.attrs["cls"] if isinstance(self.attrs.get("cls"), bool) else not siglip
        B = pixels.shape[0]
        bias_name = "vision_model.embeddings.patch_embedding.bias"
        x = F.conv2d(pixels, self.p("vision_model.embeddings.patch_embedding.weight"), self.p(bias_name) if self.has(bias_name) else None, stride=patch)
        x = x.flatten(2).transpose(1, 2)  # [B, N, D], row-major over the patch grid
        if cls:
            c = self.p("vision_model.embeddings.class_embedding").reshape(1, 1, hidden).expand(B, 1, hidden)
            x = torch.cat([c, x], dim=1)
        x = x + self.p("vision_model.embeddings.position_embedding.weight")[None]
        if self.has("vision_model.pre_layrnorm.weight"):
            x = layer_norm(x, self.p("vision_model.pre_layrnorm.weight"), self.p("vision_model.pre_layrnorm.bias"), eps)
        sel = self.a("select_layer", -1)
        up_to = layers + 1 + sel if sel < 0 else sel
        for i in range(up_to):
            x = self.run_layer(self.p("vision_model.encoder.layers.%d" % i), x, act, heads, eps)  # the layer module
        if cls and self.attrs.get("select") != "cls_patch":
            x = x[:, 1:]
        return x


class ConvEncoder(Component):
    """cnn (std/vision): blocks of conv3x3 (padding 1) -> ReLU -> 2x2 max-pool; the last grid's cells as
    tokens, row-major, after its global max-pool for select == "pooled_grid" (runtime/ops/cnn.ts)."""

    def forward(self, pixels):
        x = pixels  # [B, C, H, W]
        for i in range(self.a("layers")):
            x = F.max_pool2d(F.relu(F.conv2d(x, self.p("convs.%d.weight" % i), self.p("convs.%d.bias" % i), padding=1)), 2)
        grid = x.flatten(2).transpose(1, 2)  # [B, g*g, D]
        if self.attrs.get("select") == "grid":
            return grid
        return torch.cat([x.amax(dim=(2, 3))[:, None], grid], dim=1)  # [B, 1 + g*g, D]


class Projector(Component):
    """LLaVA's multi_modal_projector: linear, mlp_gelu of depth N (mlp2x_gelu for 2), identity."""

    def forward(self, x):
        P = "multi_modal_projector"
        if self.op == "identity":
            return x
        if self.op == "linear":
            return self.linear(x, "%s.linear_1" % P, self.has("%s.linear_1.bias" % P))
        h = self.linear(x, "%s.linear_1" % P)
        for k in range(2, self.a("depth", 2) + 1):
            h = self.linear(gelu(h), "%s.linear_%d" % (P, k))
        return h


class DecoderLayer(Layer):
    """A pre-RMSNorm decoder block: grouped-query causal attention with RoPE, then SwiGLU (llama, mistral)
    or the sparse MoE block (mixtral), each with a residual."""

    def forward(self, x, bias, cos, sin, attention_mask, stats):
        p, lin = self.p, self.linear
        heads, eps = self.a("heads"), self.a("norm_eps", 1e-5)
        kv_heads = self.a("kv_heads", heads)
        h = rms_norm(x, p("input_layernorm.weight"), eps)
        q = apply_rope(split_heads(lin(h, "self_attn.q_proj", False), heads), cos, sin)
        k = apply_rope(split_heads(lin(h, "self_attn.k_proj", False), kv_heads), cos, sin)
        v = split_heads(lin(h, "self_attn.v_proj", False), kv_heads)
        rep = heads // kv_heads
        if rep > 1:  # head h reads key/value head h // rep, as transformers' repeat_kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        x = x + lin(merge_heads(attention(q, k, v, bias)), "self_attn.o_proj", False)
        h = rms_norm(x, p("post_attention_layernorm.weight"), eps)
        return x + (self.moe(h, attention_mask, stats) if self.op == "mixtral" else self.swiglu(h))

    def swiglu(self, h):
        lin = lambda x, n: self.linear(x, "mlp.%s" % n, False)  # noqa: E731
        return lin(F.silu(lin(h, "gate_proj")) * lin(h, "up_proj"), "down_proj")

    def moe(self, h, attention_mask, stats):
        """transformers' MixtralSparseMoeBlock: softmax router, top-k (ties to the lower index), the k
        weights renormalised to 1, each expert (SwiGLU: w1 gate, w3 up, w2 down) on its tokens only."""
        experts, k = self.a("experts"), self.a("top_k")
        lin = lambda x, n: self.linear(x, "block_sparse_moe.%s" % n, False)  # noqa: E731
        D = h.shape[-1]
        x2 = h.reshape(-1, D)
        N = x2.shape[0]
        probs = torch.softmax(lin(x2, "gate"), dim=-1)  # [N, E]
        top = torch.sort(probs.detach(), dim=-1, descending=True, stable=True).indices[:, :k]
        chosen = torch.zeros(N, experts, device=h.device).scatter_(1, top, 1.0)
        picked = probs * chosen
        weights = picked / picked.sum(-1, keepdim=True)  # zero off the top-k
        out = torch.zeros_like(x2)
        for e in range(experts):
            rows = chosen[:, e].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue  # an expert without tokens is not run (and gets no gradient)
            xe = x2[rows]
            q = lambda x, n: lin(x, "experts.%d.%s" % (e, n))  # noqa: E731
            ye = q(F.silu(q(xe, "w1")) * q(xe, "w3"), "w2")
            out = out.index_add(0, rows, ye * weights[rows, e:e + 1])
        stats.append((probs, chosen, attention_mask.reshape(-1).float()))
        return out.reshape(h.shape)


class Decoder(Component):
    """llama / mistral (SwiGLU MLP) and mixtral (sparse MoE MLP): pre-RMSNorm blocks, RoPE (rotate_half),
    grouped-query causal attention over right-padded batches, final norm, tied or untied head
    (runtime/ops/decoder.ts, llama.ts, mixtral.ts)."""

    LAYERS = (r"model\.layers\.\d+", DecoderLayer)

    def embed(self, input_ids):
        return F.embedding(input_ids.long(), self.p("model.embed_tokens.weight"))

    def forward(self, x, attention_mask, aux_losses):
        layers, heads = self.a("layers"), self.a("heads")
        theta, eps = self.a("rope_theta", 10000), self.a("norm_eps", 1e-5)
        B, T, D = x.shape
        bias = causal_bias(attention_mask)
        cos, sin = rope_tables(T, D // heads, theta, x.device)
        stats = []
        for i in range(layers):
            x = self.run_layer(self.p("model.layers.%d" % i), x, bias, cos, sin, attention_mask, stats)  # the layer module
        if self.op == "mixtral":
            coef = self.a("aux_loss_coef", 0.02)
            if coef > 0:
                aux_losses.append(load_balancing_loss(stats, self.a("experts")) * coef)
        x = rms_norm(x, self.p("model.norm.weight"), eps)
        if self.attrs.get("tie_embeddings") is True:
            return F.linear(x, self.p("model.embed_tokens.weight"))  # [B, T, V]
        return self.linear(x, "lm_head", False)  # [B, T, V]


def load_balancing_loss(stats, experts):
    """transformers' load_balancing_loss_func with an attention mask, over all layers' real tokens:
    E * sum_e (share of top-k choices that went to e) * (mean router probability of e)."""
    total = sum(float(m.sum()) for _, _, m in stats)
    if total == 0:
        return torch.zeros(())
    counts = sum((c * m[:, None]).sum(0) for _, c, m in stats) / total
    mean_probs = sum((p * m[:, None]).sum(0) for p, _, m in stats) / total
    return (counts * mean_probs).sum() * experts


def llava_splice(embeds, features, image_start, image_tokens):
    """The image_tokens positions from image_start[b] (-1: text only) take the projected features."""
    if features is None:
        return embeds
    B, T, D = embeds.shape
    N = image_tokens
    if features.shape[1] != N or features.shape[2] != D:
        raise ValueError("llava_splice: image features are %s, expected [%d, %d, %d]" % (list(features.shape), B, N, D))
    idx = torch.arange(B * T, device=embeds.device).reshape(B, T)
    for b in range(B):
        s = int(image_start[b])
        if s >= 0:
            idx[b, s:s + N] = B * T + b * N + torch.arange(N, device=embeds.device)
    rows = torch.cat([embeds.reshape(B * T, D), features.reshape(B * N, D)], dim=0)
    return rows[idx.reshape(-1)].reshape(B, T, D)


def causal_lm_loss(logits, labels, ignore_index=-100):
    """Next-token cross-entropy, mean over labelled positions: logits[:, :-1] predict labels[:, 1:]."""
    V = logits.shape[-1]
    # labels shifted left and padded with ignore_index rather than logits[:, :-1] (as transformers' loss does):
    # the same sum, and logits [B, T, V] are read in place instead of copied (and their gradient scattered back)
    labels = labels.long()
    target = torch.cat([labels[:, 1:], labels.new_full((labels.shape[0], 1), ignore_index)], dim=1).reshape(-1)
    flat = logits.reshape(-1, V)  # [B*T, V], a view
    keep = target != ignore_index
    count = int(keep.sum())
    if count == 0:
        return logits.new_zeros(())
    t = target[keep]
    if int(t.min()) < 0 or int(t.max()) >= V:
        raise ValueError("a label is outside the vocabulary [0, %d)" % V)
    # ignore_index rather than shifted[keep]: the same sum, without a [N, V] gather and its scatter in backward
    return F.cross_entropy(flat, target, ignore_index=ignore_index, reduction="sum") / count


# --------------------------------------------------------------------------------------------------
# LoRA adapters (runtime/ops/lora.ts; PEFT's lora.Linear): an adapter of the graph (ModelDef.adapters)
# holds, per linear layer it targets, `<module>.lora_A.weight` [r, in] and `<module>.lora_B.weight`
# [out, r] under the component's Hugging Face module names (PEFT's names, without its
# `base_model.model.` prefix), and the adapted layer computes
#     y = x W^T (+ b) + (alpha / r) * dropout(x) A^T B^T.
# Dropout acts only in a training forward, with masks from pipec's seeded stream of (stage seed,
# micro-batch, module): PipecRng.derive(seed, "lora-dropout/<stage>/<micro-batch>/<module>"), so the
# exported trainer draws pipec's masks. The adapters live in PipeModel.adapters beside the components
# (key: the adapter's name with "-" for ".", ModuleDict keys cannot hold a dot); a stage trains or freezes
# each by its name, as a component. A user's class (custom component) is adapted by a forward hook on
# each targeted nn.Linear.
# --------------------------------------------------------------------------------------------------
def adapter_key(name):
    """The PipeModel.adapters key of adapter "lm.lora": "lm-lora"."""
    return name.replace(".", "-")


class Adapter(Named):
    def __init__(self, spec):
        super().__init__()
        self.adapter, self.component = spec["name"], spec["component"]
        self.rank, self.alpha, self.dropout = spec["rank"], spec["alpha"], spec["dropout"]
        self.scale = spec["alpha"] / spec["rank"]
        self.quantize = spec.get("quantize", "none")
        self.peft_config = spec.get("peft_config", {})
        self.stream = None  # (seed, micro-batch key) while a training forward runs (PipeModel.lora_stream)
        self.param_names = []
        for t in spec["tensors"]:
            for n in expand_tensor_names(t["name"], t["repeat"]):
                self._register(n, nn.Parameter(torch.zeros(t["shape"])))
                self.param_names.append(n)
        self.adapted = [n[: -len(".lora_A.weight")] for n in self.param_names if n.endswith(".lora_A.weight")]


def dropout_mask(seed, key, module, shape, p, device):
    """pipec's LoRA dropout mask for input x of `module`: 1 / (1 - p) where the stream's draw is >= p, else 0."""
    n = 1
    for d in shape:
        n *= d
    u = pipec_uniform(seed, "lora-dropout/%s/%s" % (key, module), n, device)
    keep = torch.tensor(1.0 / (1.0 - p), dtype=torch.float64, device=device)
    return torch.where(u >= p, keep, torch.zeros((), dtype=torch.float64, device=device)).float().reshape(shape)


def lora_linear(ad, module, x, y):
    """y + (alpha / r) * dropout(x) A^T B^T: the LoRA update of linear layer `module` (its full name in the
    component) on input x [..., in], added to the base output y [..., out]."""
    if ad.dropout > 0 and ad.stream is not None:
        x = x * dropout_mask(ad.stream[0], ad.stream[1], module, list(x.shape), ad.dropout, x.device).to(x.dtype)
    a = ad.p(module + ".lora_A.weight")
    b = ad.p(module + ".lora_B.weight")
    return y + F.linear(F.linear(x, a), b) * ad.scale  # [..., r] -> [..., out]


def attach_adapter(comp, ad):
    """Routes the component's adapted linear layers through lora_linear: pipec's components by their
    linear() (each of its modules shares one dict of full name -> adapter), a user's class by a forward hook
    on each targeted nn.Linear (PEFT's way)."""
    if isinstance(comp, Component):
        table = dict(comp.lora)
        table.update({m: ad for m in ad.adapted})
        for m in comp.modules():
            if isinstance(m, Named):
                m.lora = table
        return
    for module in ad.adapted:
        try:
            lin = comp.get_submodule(module)
        except AttributeError:
            lin = None
        if not isinstance(lin, nn.Linear):
            raise ValueError("adapter %s targets %s, which is not an nn.Linear of %s (component %s): a user's class is adapted through its nn.Linear modules" % (
                ad.adapter, module, type(comp).__name__, ad.component))
        lin.register_forward_hook(lambda _m, inputs, out, module=module: lora_linear(ad, module, inputs[0], out))


# --------------------------------------------------------------------------------------------------
# Custom components with a PyTorch half: the user's own class, imported from the package the export
# carries beside this file (custom_<component>/), so its relative imports work. It is built from its
# config class (the component's config.json) and must hold exactly its base's parameters, under the
# same Hugging Face names. It is called as a transformers causal LM: inputs_embeds and attention_mask
# in, logits out, and for an MoE base the unscaled load-balancing loss as aux_loss.
# --------------------------------------------------------------------------------------------------
_NOT_CONFIG_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "torch_dtype", "dtype")


def build_custom(spec):
    import importlib
    py = spec["python"]
    module = importlib.import_module("%s.%s" % (py["package"], py["module"]))
    cls = getattr(module, py["class"])
    fields = {k: v for k, v in spec["hf_config"].items() if k not in _NOT_CONFIG_KEYS}
    config_class = getattr(cls, "config_class", None)
    model = cls(config_class(**fields)) if config_class is not None else cls(fields)
    want = {}
    for t in spec["tensors"]:
        for n in expand_tensor_names(t["name"], t["repeat"]):
            want[n] = list(t["shape"])
    have = {n: list(p.shape) for n, p in model.named_parameters()}
    if have != want:
        missing = sorted(set(want) - set(have))[:3]
        extra = sorted(set(have) - set(want))[:3]
        shapes = sorted(n for n in set(want) & set(have) if want[n] != have[n])[:3]
        raise ValueError("%s (component %s) must hold exactly its base's parameters (%s): missing %s, unexpected %s, other shapes %s" % (
            py["class"], spec["name"], spec["op"], missing, extra, [(n, have[n], want[n]) for n in shapes]))
    model.pipec_component = spec["name"]
    model.pipec_aux_loss_coef = py.get("aux_loss_coef", 0)
    return model


def custom_embed(comp, input_ids):
    return comp.get_input_embeddings()(input_ids.long())


def custom_lm(comp, x, attention_mask, aux_losses):
    """x [B, T, D] input embeddings -> logits [B, T, V]; an MoE class's aux_loss (times the coefficient) joins aux_losses."""
    coef = comp.pipec_aux_loss_coef
    kwargs = {"inputs_embeds": x, "attention_mask": attention_mask}
    if coef > 0:
        kwargs["output_router_logits"] = True
    out = comp(**kwargs)
    logits = out["logits"] if isinstance(out, dict) else getattr(out, "logits", None)
    if logits is None:
        logits = out[0] if isinstance(out, (tuple, list)) else out
    aux = out.get("aux_loss") if isinstance(out, dict) else getattr(out, "aux_loss", None)
    if coef > 0 and aux is not None:
        aux_losses.append(aux * coef)
    return logits


COMPONENT_CLASSES = {
    "vit": VisionEncoder, "clip_vit": VisionEncoder, "siglip_vit": VisionEncoder, "cnn": ConvEncoder,
    "linear": Projector, "mlp_gelu": Projector, "identity": Projector,
    "llama": Decoder, "mistral": Decoder, "mixtral": Decoder,
}


def expand_tensor_names(name, repeat):
    """'model.layers.{i}.x' with repeat {i: 2} -> layers 0 and 1; '{k+2}' offsets (runtime/params.ts)."""
    names = [name]
    for var, count in repeat:
        pat = re.compile(r"\{" + var + r"\s*([+-]\s*\d+)?\}")
        nxt = []
        for n in names:
            for i in range(count):
                nxt.append(pat.sub(lambda m, i=i: str(i + (int(m.group(1).replace(" ", "")) if m.group(1) else 0)), n))
        names = nxt
    return names


def build_component(spec):
    if spec.get("python"):
        return build_custom(spec)
    tensors = []
    for t in spec["tensors"]:
        for n in expand_tensor_names(t["name"], t["repeat"]):
            tensors.append((n, t["shape"]))
    return COMPONENT_CLASSES[spec["op"]](spec["name"], spec["op"], spec["attrs"], tensors)


class PipeModel(nn.Module):
    """A model of the graph: its components (by name) and, in the subclass, the graph's nodes in order."""

    spec = None  # set by each generated subclass

    def __init__(self):
        super().__init__()
        self.components = nn.ModuleDict({c["name"]: build_component(c) for c in self.spec["components"]})
        self.adapters = nn.ModuleDict({adapter_key(a["name"]): Adapter(a) for a in self.spec.get("adapters", [])})
        for ad in self.adapters.values():
            attach_adapter(self.components[ad.component], ad)

    def owners(self):
        """(name, module) of every component and then every adapter: what a stage trains or freezes by name,
        and what a checkpoint holds a folder of. Each module's named_parameters() are pipec's names."""
        return list(self.components.items()) + [(ad.adapter, ad) for ad in self.adapters.values()]

    def adapter(self, name):
        """The Adapter named "lm.lora", or None."""
        key = adapter_key(name)
        return self.adapters[key] if key in self.adapters else None

    def lora_stream(self, seed=None, key=None):
        """Where LoRA dropout draws its masks in the next forwards: (stage seed, "<stage>/<micro-batch>") in
        training, None (no dropout) otherwise."""
        for ad in self.adapters.values():
            ad.stream = None if key is None else (seed, key)

    def hf_config(self, name):
        """The component's config.json (runtime/weights/hf-config.ts)."""
        return next(c["hf_config"] for c in self.spec["components"] if c["name"] == name)

    def init_fresh(self, seed, mode="pipec", skip=()):
        """Fresh weights for every component and adapter but those in skip (the ones about to be loaded
        whole: pipec's seeded streams are slow in Python, seconds for a few million parameters)."""
        with torch.no_grad():
            for name, owner in self.owners():
                if name in skip:
                    continue
                for n, prm in owner.named_parameters():
                    prm.copy_(initial_value(n, list(prm.shape), seed, mode, init_std(getattr(owner, "attrs", {}), list(prm.shape))))

    def gradient_checkpointing_enable(self, on=True):
        """A stage's gradient_checkpointing: each layer of pipec's components is recomputed in backward
        (Component.run_layer); a user's component that is a transformers model gets its own method of that name."""
        for comp in self.components.values():
            if isinstance(comp, Component):
                comp.checkpoint_layers = on
            elif getattr(comp, "supports_gradient_checkpointing", False):
                comp.gradient_checkpointing_enable() if on else comp.gradient_checkpointing_disable()

    def gradient_checkpointing_disable(self):
        self.gradient_checkpointing_enable(False)

    def load_component(self, name, folder):
        """Loads one component from a Hugging Face weights folder, or one adapter from a PEFT folder
        (load_adapter); every tensor must be there with its shape."""
        if self.adapter(name) is not None:
            return self.load_adapter(name, folder)
        self._load(self.components[name], read_weights_dir(folder), "", folder)

    def load_adapter(self, name, folder):
        """An adapter from its PEFT folder (adapter_model.safetensors, `base_model.model.<name>` tensors)."""
        path = os.path.join(folder, ADAPTER_WEIGHTS)
        if not os.path.exists(path):
            raise KeyError("adapter %s: %s is missing" % (name, path))
        self._load(self.adapter(name), read_safetensors(path), PEFT_PREFIX, path)

    @staticmethod
    def _load(owner, got, prefix, where):
        with torch.no_grad():
            for n, prm in owner.named_parameters():
                if prefix + n not in got:
                    raise KeyError("tensor %s is missing from %s" % (prefix + n, where))
                t = got[prefix + n]
                if list(t.shape) != list(prm.shape):
                    raise ValueError("tensor %s in %s is %s, expected %s" % (prefix + n, where, list(t.shape), list(prm.shape)))
                prm.copy_(t.to(prm.device))

    def write_adapter(self, name, folder, tensors=None, base_model=None):
        """One adapter's PEFT folder, as pipec writes it (runtime/train/adapters.ts): adapter_model.safetensors
        with `base_model.model.<name>` tensors, and adapter_config.json (LoraConfig) whose
        base_model_name_or_path is the component's folder (base_model). tensors: pipec name -> tensor, else
        the adapter's own parameters."""
        ad = self.adapter(name)
        if tensors is None:
            tensors = dict(ad.named_parameters())
        os.makedirs(folder, exist_ok=True)
        write_safetensors(os.path.join(folder, ADAPTER_WEIGHTS), {PEFT_PREFIX + n: t for n, t in tensors.items()}, {"pipec_adapter": name})
        config = dict(ad.peft_config)
        config["base_model_name_or_path"] = base_model
        with open(os.path.join(folder, ADAPTER_CONFIG), "w") as f:
            f.write(json.dumps(config, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())


    def component_tensors(self, name):
        """The component's weights under their Hugging Face names, for a checkpoint (FSDP's wrapper segments
        left out; a QLoRA base's weights as they were before bitsandbytes took them)."""
        comp = self.components[name]
        kept = getattr(comp, "fp32_kept", {})
        return {n.replace("_fsdp_wrapped_module.", ""): kept.get(n, p) for n, p in comp.named_parameters()}


def quantizable(name, shape):
    """The weights QLoRA holds quantized: every linear layer's, except lm_head (as transformers and
    bitsandbytes leave it), the embeddings and convolutions."""
    return len(shape) == 2 and name.endswith(".weight") and not re.search(r"(^|\.)(lm_head|embed_tokens|position_embedding)\.weight$", name)


def quantize_component(comp, kind, device, bnb):
    """QLoRA on CUDA: each linear weight of a (frozen) pipec component held by bitsandbytes, nf4
    (Linear4bit / Params4bit, fp32 compute) or int8 (Linear8bitLt / Int8Params, LLM.int8()): Named.linear
    calls the quantized layer instead of F.linear. Its fp32 values stay in host memory for checkpoints (the
    base is written unchanged) and its GPU copy is freed. Returns the number of weights quantized."""
    table, kept = {}, {}
    for n, prm in list(comp.named_parameters()):
        if not quantizable(n, list(prm.shape)):
            continue
        w = prm.detach().float().cpu()
        out_f, in_f = w.shape
        if kind == "nf4":
            lin = bnb.nn.Linear4bit(in_f, out_f, bias=False, compute_dtype=torch.float32, quant_type="nf4")
            lin.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4")
        else:
            lin = bnb.nn.Linear8bitLt(in_f, out_f, bias=False, has_fp16_weights=False, threshold=6.0)
            lin.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
        table[n[: -len(".weight")]] = lin.to(device)  # bitsandbytes quantizes as the weight moves to the GPU
        kept[n] = w
        prm.data = torch.empty(0, device=prm.device)
    comp.fp32_kept = kept
    for m in comp.modules():
        if isinstance(m, Named):
            m.quantized = table
    return len(table)


ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."  # PeftModel.save_pretrained's prefix of every tensor
