# TanukiForCausalLM, the PyTorch half (as published with Hugging Face remote code): a Mixtral-style
# sparse MoE decoder whose router is tempered: each MoE block routes with
# softmax(gate(x) / router_temperature) instead of Mixtral's softmax(gate(x)), then takes the top-k
# experts and renormalises their weights as Mixtral does; the same probabilities feed the
# load-balancing loss. Parameters are named as Mixtral's (model.layers.N.block_sparse_moe.experts.E.w1,
# ...). modeling_tanuki.ts is the same class for pipec's runtime; the two compute the same numbers
# (test/e2e/custom-moe.test.ts). Its configuration is a relative import: this file works as part of a
# package (the exported program carries it as one; transformers' remote code loads it as one).
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import MoeCausalLMOutputWithPast

from .configuration_tanuki import TanukiConfig

NEG_INF = -1e9


class TanukiRMSNorm(nn.Module):
    def __init__(self, hidden, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, d, theta, device):
    """cos, sin [T, d] in the rotate_half layout, computed in float64, then float32."""
    t = torch.arange(T, dtype=torch.float64)[:, None]
    inv = torch.tensor([theta ** ((2 * i) / d) for i in range(d // 2)], dtype=torch.float64)[None, :]
    angle = t / inv
    return torch.cat([angle.cos(), angle.cos()], 1).float().to(device), torch.cat([angle.sin(), angle.sin()], 1).float().to(device)


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


class TanukiAttention(nn.Module):
    """Grouped-query causal attention with RoPE, no biases."""

    def __init__(self, config):
        super().__init__()
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.hidden_size // self.heads
        D = config.hidden_size
        self.q_proj = nn.Linear(D, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(D, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(D, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, D, bias=False)

    def forward(self, x, bias, cos, sin):
        B, T, _ = x.shape
        split = lambda y, h: y.view(B, T, h, self.head_dim).transpose(1, 2)  # noqa: E731  [B, H, T, d]
        q = apply_rope(split(self.q_proj(x), self.heads), cos, sin)
        k = apply_rope(split(self.k_proj(x), self.kv_heads), cos, sin)
        v = split(self.v_proj(x), self.kv_heads)
        rep = self.heads // self.kv_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim)) + bias
        out = torch.matmul(torch.softmax(scores, dim=-1), v)  # [B, H, T, d]
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.heads * self.head_dim))


class TanukiExpert(nn.Module):
    """SwiGLU expert: w1 gate, w3 up, w2 down."""

    def __init__(self, config):
        super().__init__()
        self.w1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.w2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.w3 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TanukiSparseMoeBlock(nn.Module):
    """Mixtral's sparse MoE block with Tanuki's tempered router: softmax(gate(x) / router_temperature),
    top-k (ties to the lower index), the k weights renormalised; each expert runs on its tokens only."""

    def __init__(self, config):
        super().__init__()
        self.experts_count, self.top_k = config.num_local_experts, config.num_experts_per_tok
        self.temperature = config.router_temperature
        self.gate = nn.Linear(config.hidden_size, self.experts_count, bias=False)
        self.experts = nn.ModuleList([TanukiExpert(config) for _ in range(self.experts_count)])

    def forward(self, h):
        """h [B, T, D] -> (out [B, T, D], router probabilities [B*T, E], top-k choice mask [B*T, E])."""
        D = h.shape[-1]
        x2 = h.reshape(-1, D)
        N = x2.shape[0]
        probs = torch.softmax(self.gate(x2) / self.temperature, dim=-1)
        top = torch.sort(probs.detach(), dim=-1, descending=True, stable=True).indices[:, : self.top_k]
        chosen = torch.zeros(N, self.experts_count, device=h.device).scatter_(1, top, 1.0)
        picked = probs * chosen
        weights = picked / picked.sum(-1, keepdim=True)
        out = torch.zeros_like(x2)
        for e, expert in enumerate(self.experts):
            rows = chosen[:, e].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            out = out.index_add(0, rows, expert(x2[rows]) * weights[rows, e : e + 1])
        return out.reshape(h.shape), probs, chosen


class TanukiDecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.input_layernorm = TanukiRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = TanukiAttention(config)
        self.post_attention_layernorm = TanukiRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.block_sparse_moe = TanukiSparseMoeBlock(config)

    def forward(self, x, bias, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), bias, cos, sin)
        moe, probs, chosen = self.block_sparse_moe(self.post_attention_layernorm(x))
        return x + moe, probs, chosen


def load_balancing_loss(stats, experts, mask):
    """Mixtral's load-balancing loss over all layers' real tokens: E * sum_e (share of top-k choices that
    went to e) * (mean router probability of e)."""
    m = mask.reshape(-1).float()
    total = float(m.sum()) * len(stats)
    if total == 0:
        return None
    counts = sum((c * m[:, None]).sum(0) for _, c in stats) / total
    mean_probs = sum((p * m[:, None]).sum(0) for p, _ in stats) / total
    return (counts * mean_probs).sum() * experts


class TanukiPreTrainedModel(PreTrainedModel):
    config_class = TanukiConfig
    base_model_prefix = "model"
    _no_split_modules = ["TanukiDecoderLayer"]

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, std)
        elif isinstance(module, TanukiRMSNorm):
            module.weight.data.fill_(1.0)


class TanukiModel(TanukiPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([TanukiDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = TanukiRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None):
        """-> (hidden states [B, T, D] after the final norm, [(probs, chosen)] per layer). Right-padded batches:
        key j is visible to query i when j <= i and j is not padding."""
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = x.shape
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long, device=x.device)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        allowed = causal[None, None] & (attention_mask[:, None, None, :] != 0)
        bias = torch.where(allowed, torch.zeros((), device=x.device), torch.full((), NEG_INF, device=x.device))
        cos, sin = rope_tables(T, self.config.hidden_size // self.config.num_attention_heads, self.config.rope_theta, x.device)
        stats = []
        for layer in self.layers:
            x, probs, chosen = layer(x, bias, cos, sin)
            stats.append((probs, chosen))
        return self.norm(x), stats


class TanukiForCausalLM(TanukiPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        self.model = TanukiModel(config)
        # tied embeddings read the embedding matrix; there is then no lm_head parameter
        self.lm_head = None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, labels=None, output_router_logits=None, return_dict=None, **kwargs):
        hidden, stats = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        head = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(hidden, head)  # [B, T, V]
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        want_aux = self.config.output_router_logits if output_router_logits is None else output_router_logits
        aux = load_balancing_loss(stats, self.config.num_local_experts, attention_mask) if want_aux else None
        loss = None
        if labels is not None:
            shifted, target = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
            loss = F.cross_entropy(shifted, target, ignore_index=-100)
            if aux is not None:
                loss = loss + self.config.router_aux_loss_coef * aux
        return MoeCausalLMOutputWithPast(loss=loss, aux_loss=aux, logits=logits, router_logits=tuple(p for p, _ in stats) if want_aux else None)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        # no key/value cache: every step runs the whole sequence
        return {"input_ids": input_ids, "attention_mask": attention_mask}
