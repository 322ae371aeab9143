import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import GRAPH_HASH, MODELS, Component, DecoderLayer, Layer, VisionLayer, quantize_component, read_safetensors, tensor_bytes, write_safetensors  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Learning-rate schedules (runtime/train/schedule.ts, transformers' get_*_schedule_with_warmup):
# step s (0-based) of a warmup trains at s / warmup, so step 0 trains at lr 0.
# --------------------------------------------------------------------------------------------------
def warmup_steps(schedule, total):
    steps = float(schedule["attrs"].get("warmup_steps", 0) or 0)
    if steps > 0:
        return steps
    return math.ceil(float(schedule["attrs"].get("warmup_ratio", 0) or 0) * total)


def lr_multiplier(schedule, step, total):
    warm = warmup_steps(schedule, total)
    if step < warm:
        return step / max(1, warm)
    min_ratio = float(schedule["attrs"].get("min_lr_ratio", 0) or 0)
    progress = (step - warm) / max(1, total - warm)
    name = schedule["name"]
    if name == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if name == "linear":
        return max(min_ratio, 1 - progress * (1 - min_ratio))
    if name == "constant":
        return 1.0
    raise ValueError("unknown schedule %r" % name)


# --------------------------------------------------------------------------------------------------
# Optimizers (runtime/train/optimizer.ts): PyTorch's AdamW (decoupled decay) and SGD with momentum,
# over the trainable parameters only; biases and normalisation weights are not decayed (transformers'
# Trainer). One global step counter, as pipec: a parameter without a gradient in a step (an expert no
# token was routed to) is left untouched, moments included. A stage's param_groups (`train: [proj(lr:
# 2e-4)]`) give a component's parameters their own lr / weight decay; the schedule scales every lr by
# the same multiplier (LambdaLR over param groups).
# --------------------------------------------------------------------------------------------------
_NO_DECAY_BIAS = re.compile(r"\.bias$|_bias$")
_NO_DECAY_NORM = re.compile(r"(norm|layernorm|layrnorm|layer_norm)[^.]*\.weight$")


def decays(name):
    return not (_NO_DECAY_BIAS.search(name) or _NO_DECAY_NORM.search(name))


def own_settings(stage, components):
    """Parameter name -> its component's (or adapter's) param group: {"lr": ..., "weight_decay": ...}.
    components: name -> the module whose named_parameters() are that component's (or adapter's):
    dict(model.owners())."""
    own = {}
    for g in stage.get("param_groups", []):
        comp = components[g["name"]] if g["name"] in components else None
        if comp is not None:
            for n, _ in comp.named_parameters():
                own[n] = g
    return own


class Optimizer:
    def __init__(self, name, attrs, params, own=None):
        if name not in ("adamw", "sgd"):
            raise ValueError("unknown optimizer %r" % name)
        self.name, self.attrs, self.params = name, attrs, params  # params: HF name -> Parameter
        self.own = own or {}  # HF name -> its param group's settings
        self.step_count = 0
        self.m = {n: torch.zeros_like(p) for n, p in params.items()}
        self.v = {n: torch.zeros_like(p) for n, p in params.items()} if name == "adamw" else {}

    def num(self, key, default):
        v = self.attrs.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default

    def settings(self, name, lr):
        """(lr, weight decay) of a parameter at stage learning rate lr."""
        own = self.own.get(name, {})
        base = self.num("lr", lr)
        return (own["lr"] * (lr / base) if "lr" in own and base > 0 else lr,
                float(own["weight_decay"]) if "weight_decay" in own else self.num("weight_decay", 0.0))

    @torch.no_grad()
    def apply(self, lr):
        """One update at stage learning rate lr; the gradients are already averaged and clipped."""
        self.step_count += 1
        live = [(name, p) for name, p in self.params.items() if p.grad is not None]
        groups = {}
        for name, p in live:
            groups.setdefault(self.settings(name, lr), []).append((name, p))
        for (group_lr, wd), members in groups.items():
            self.update(members, group_lr, wd)

    def update(self, live, lr, wd):
        t = self.step_count
        if self.name == "adamw":
            # AdamW over all parameters at once (torch._foreach_*: one kernel launch per operation for the
            # whole list instead of one per parameter), the same arithmetic as one parameter at a time:
            # p *= 1 - lr * wd (decayed ones); p -= m / (sqrt(v) / sqrt(1 - b2^t) + eps) * lr / (1 - b1^t)
            if not live:
                return
            b1, b2, eps = self.num("beta1", 0.9), self.num("beta2", 0.999), self.num("eps", 1e-8)
            bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
            params = [p for _, p in live]
            grads = [p.grad for _, p in live]
            m = [self.m[name] for name, _ in live]
            v = [self.v[name] for name, _ in live]
            if fused_adamw_fits(params, grads, m, v):
                # torch's fused AdamW kernel (what torch.optim.AdamW(fused=True) runs) on this optimizer's own
                # moments: one pass over memory instead of the nine below, the same update (its m is a lerp,
                # m + (1 - b1)(g - m), which rounds differently in the last bit). Decayed and undecayed
                # parameters are two calls, as they are two param groups in torch.
                steps = [torch.tensor(float(t), device=params[0].device)] * len(params)  # read, not advanced, by the kernel
                for decay in (True, False):
                    idx = [i for i, (name, _) in enumerate(live) if decays(name) == decay]
                    if idx:
                        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
                        torch._fused_adamw_(pick(params), pick(grads), pick(m), pick(v), [], pick(steps), lr=lr, beta1=b1, beta2=b2,
                                            weight_decay=wd if decay else 0.0, eps=eps, amsgrad=False, maximize=False)
                return
            torch._foreach_mul_(m, b1)
            torch._foreach_add_(m, grads, alpha=1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, math.sqrt(bc2))
            torch._foreach_add_(denom, eps)
            decayed = [p for name, p in live if decays(name)]
            if wd and decayed:
                torch._foreach_mul_(decayed, 1 - lr * wd)
            torch._foreach_addcdiv_(params, m, denom, value=-(lr / bc1))
            return
        for name, p in live:
            decay = wd if decays(name) else 0.0
            mom = self.num("momentum", 0.9)
            gd = p.grad + p * decay if decay else p.grad
            buf = gd.clone() if t == 1 else self.m[name].mul(mom).add(gd)
            self.m[name].copy_(buf)
            p.sub_(buf * lr)

    def parts(self):
        """The per-parameter state, each part with the prefix of its tensor names in optimizer.safetensors."""
        return [("exp_avg.", self.m)] + ([("exp_avg_sq.", self.v)] if self.name == "adamw" else [])

    def state_tensors(self):
        return {prefix + n: part[n] for prefix, part in self.parts() for n in self.params}

    def load_state(self, tensors, step):
        with torch.no_grad():
            for prefix, part in self.parts():
                for n in self.params:
                    if prefix + n in tensors:
                        part[n].copy_(tensors[prefix + n])
        self.step_count = step


class LossScaler:
    """fp16 loss scaling by torch.amp.GradScaler's rule and defaults (scale 2**16, halved on an overflow,
    doubled after 2000 good steps), written out because the optimizer is pipec's own (not a torch.optim one,
    which GradScaler.step needs): the loss is multiplied by `scale` before backward, the gradients divided by
    it before clipping, and a step whose gradients are not finite is skipped (no update) and the scale halved."""

    def __init__(self, scale=2.0 ** 16, growth_interval=2000):
        self.scale, self.growth_interval, self.good = scale, growth_interval, 0

    def update(self, finite):
        if not finite:
            self.scale, self.good = self.scale * 0.5, 0
            return
        self.good += 1
        if self.good == self.growth_interval:
            self.scale, self.good = self.scale * 2.0, 0


def torch_at_least(major, minor):
    """This torch is (major, minor) or newer."""
    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (major, minor)


def fused_adamw_fits(params, grads, m, v):
    """torch._fused_adamw_ (torch >= 2.4, the first with its CPU kernel; 2.0-2.3 have the name but no CPU
    kernel) takes these: float32 tensors, dense, all on one CPU or CUDA device. PIPEC_ADAMW=foreach turns it
    off (the written-out update below it, also what older torch runs)."""
    if not hasattr(torch, "_fused_adamw_") or not torch_at_least(2, 4) or os.environ.get("PIPEC_ADAMW") == "foreach":
        return False
    tensors = params + grads + m + v
    device = tensors[0].device
    return device.type in ("cpu", "cuda") and all(x.dtype == torch.float32 and x.device == device and not x.is_sparse for x in tensors)


def all_reduce_grads(params, world):
    """Data parallelism: sums every gradient over the processes (one flat buffer). A parameter no process
    produced a gradient for (an expert no token reached) keeps none, as in a single process."""
    import torch.distributed as dist
    has = torch.tensor([0.0 if p.grad is None else 1.0 for p in params], device=params[0].device)
    dist.all_reduce(has)
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if live:
        flat = torch.cat([p.grad.reshape(-1) for p in live])
        dist.all_reduce(flat)
        off = 0
        for p in live:
            n = p.numel()
            p.grad.copy_(flat[off:off + n].view_as(p.grad))
            off += n


@torch.no_grad()
def clip_by_global_norm(params, max_norm, sharded_on=None):
    """torch.nn.utils.clip_grad_norm_ as pipec applies it: scale by max_norm / (norm + 1e-6) when norm > max_norm.
    sharded_on: the device of a sharded run (FSDP), where each process holds a slice of every gradient and
    the squares are summed over the processes."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads and sharded_on is None:
        return 0.0
    if grads and hasattr(torch, "_foreach_norm"):  # one pass over all gradients, one read back
        sq = float(torch.stack(torch._foreach_norm(grads)).double().pow(2).sum())
    else:
        sq = sum(float(g.double().pow(2).sum()) for g in grads)
    if sharded_on is not None:  # every process takes part, with or without a slice of its own
        total = torch.tensor([sq], dtype=torch.float64, device=sharded_on)
        torch.distributed.all_reduce(total)
        sq = float(total[0])
    norm = math.sqrt(sq)
    if max_norm > 0 and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        if grads:
            torch._foreach_mul_(grads, scale)
    return norm


# --------------------------------------------------------------------------------------------------
# Sharded training (--fsdp, PyTorch >= 2.0): FSDP shards each layer (a VisionLayer or DecoderLayer
# module) and the rest of the model as one more unit; parameters, gradients and optimizer state are
# split over the processes and a unit is gathered only while it runs. use_orig_params keeps every
# parameter object under its own name (as a slice of its unit's flat shard), so the optimizer above,
# which updates element by element, runs unchanged on the slices.
# --------------------------------------------------------------------------------------------------
FSDP_STRATEGIES = {"full": "FULL_SHARD", "grad_op": "SHARD_GRAD_OP"}


def fsdp_available():
    """None when this torch can run --fsdp, else why not."""
    if not torch_at_least(2, 0):
        return "--fsdp needs PyTorch 2.0 or newer (FSDP with use_orig_params); this is torch %s" % torch.__version__
    return None


def custom_layer_classes(model):
    """The layer classes of the users' own components: those their class names in _no_split_modules (transformers' convention)."""
    out = set()
    for comp in model.components.values():
        names = set(getattr(comp, "_no_split_modules", None) or [])
        out.update(type(m) for m in comp.modules() if type(m).__name__ in names)
    return out


def fsdp_wrap(model, strategy, device):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    layers = {VisionLayer, DecoderLayer} | custom_layer_classes(model)
    return FSDP(model, auto_wrap_policy=ModuleWrapPolicy(layers), sharding_strategy=getattr(ShardingStrategy, FSDP_STRATEGIES[strategy]),
                use_orig_params=True, device_id=device, sync_module_states=False)


def unwrapped_name(name):
    """A parameter's name without the FSDP wrappers' segments: its Hugging Face name."""
    return name.replace("_fsdp_wrapped_module.", "")


@contextlib.contextmanager
def params_lent(params):
    """Lends the parameters (this process's slices) as buffers for the with-block: FSDP gathers and splits
    whatever they hold. Their values are put back at the end."""
    with torch.no_grad():
        kept = {n: p.detach().clone() for n, p in params.items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(kept[n])


@torch.no_grad()
def fsdp_gather(wrapped, params, local):
    """Whole tensors, on process 0, of per-parameter state held as slices shaped like the local shards (an
    optimizer's moments): each slice goes in its parameter's place and the units are gathered."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    out = {}
    with params_lent(params):
        for n, p in params.items():
            p.copy_(local[n])
        with FSDP.summon_full_params(wrapped, writeback=False, rank0_only=True):
            if torch.distributed.get_rank() == 0:
                out = {n: p.detach().clone() for n, p in params.items()}
    return out


@torch.no_grad()
def fsdp_scatter(wrapped, params, whole):
    """The reverse of fsdp_gather: this process's slices of whole per-parameter tensors."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    with params_lent(params):
        with FSDP.summon_full_params(wrapped, writeback=True):
            for n, p in params.items():
                p.copy_(whole[n])
        return {n: p.detach().clone() for n, p in params.items()}


def fsdp_optimizer_tensors(wrapped, optimizer):
    """Optimizer.state_tensors, whole, on process 0."""
    out = {}
    for prefix, part in optimizer.parts():
        out.update({prefix + n: t for n, t in fsdp_gather(wrapped, optimizer.params, part).items()})
    return out


def fsdp_load_optimizer(wrapped, optimizer, whole, step):
    """Optimizer.load_state from whole tensors (a checkpoint), keeping this process's slices."""
    local = {}
    for prefix, part in optimizer.parts():
        have = {n: p for n, p in optimizer.params.items() if prefix + n in whole}
        local.update({prefix + n: t for n, t in fsdp_scatter(wrapped, have, {n: whole[prefix + n] for n in have}).items()})
    optimizer.load_state(local, step)


@torch.no_grad()
def fsdp_unwrap(wrapped, model_name, device):
    """A plain (unsharded) model with the sharded one's weights, on every process: the next stage wraps
    anew, with its own trainable set."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    plain = MODELS[model_name]().to(device)
    with FSDP.summon_full_params(wrapped, writeback=False):
        whole = {unwrapped_name(n): p for n, p in wrapped.module.named_parameters()}
        for n, p in plain.named_parameters():
            p.copy_(whole[n])
    return plain


# --------------------------------------------------------------------------------------------------
# DeepSpeed (--deepspeed launch/<stage>.deepspeed.json, under torchrun; DeepSpeed >= 0.13, tested with
# 0.16.5): deepspeed.initialize with the exported config and this trainer's own optimizer as torch's
# AdamW / SGD (the same update as the written-out one above, decay groups included), ZeRO-1/2/3 from the
# config. Leaf modules are set with deepspeed.utils.set_z3_leaf_modules before initialize (the API
# every DeepSpeed from 0.13 has; the config's zero_optimization.leaf_module exists only from 0.18, and
# older versions reject the key): pipec's own layers (their parameters are read by name inside the
# layer's forward) and every block_sparse_moe of a user's class (an MoE block runs a different subset
# of its experts each step, so ZeRO-3 gathers it whole). Parameters pipec's components read outside a
# layer (embeddings, final norm, head, projector) are registered as external parameters of the model.
# --------------------------------------------------------------------------------------------------
def deepspeed_available():
    """None when this Python can run --deepspeed, else why not."""
    try:
        import deepspeed  # noqa: F401
        from deepspeed.utils import set_z3_leaf_modules  # noqa: F401
    except ImportError as e:
        return "--deepspeed needs DeepSpeed >= 0.13 (%s); launch/launch.sh takes FSDP where it is not installed" % e
    return None


def zero3_leaf_classes(model):
    classes = {VisionLayer, DecoderLayer}
    for name, m in model.named_modules():
        if name.endswith(".block_sparse_moe") and type(m) is not torch.nn.Module and not isinstance(m, Layer):
            classes.add(type(m))
    return sorted((c for c in classes if any(type(m) is c for m in model.modules())), key=lambda c: c.__name__)


def deepspeed_wrap(model, stage, trainable, config, device):
    import deepspeed
    from deepspeed.utils import set_z3_leaf_modules
    zero = int(config.get("zero_optimization", {}).get("stage", 0))
    leaves = zero3_leaf_classes(model)
    if zero == 3 and leaves:
        set_z3_leaf_modules(model, leaves)
    if zero == 3:
        in_layers = {id(p) for m in model.modules() if isinstance(m, Layer) or getattr(m, "_z3_leaf", False) for p in m.parameters()}
        for comp in model.components.values():
            if isinstance(comp, Component):
                for p in comp.parameters():
                    if id(p) not in in_layers:
                        deepspeed.zero.register_external_parameter(model, p)
        for ad in model.adapters.values():  # read inside the adapted layers, but held by the adapter module
            for p in ad.parameters():
                deepspeed.zero.register_external_parameter(model, p)
    attrs = stage["optimizer"]["attrs"]
    num = lambda k, d: float(attrs[k]) if isinstance(attrs.get(k), (int, float)) and not isinstance(attrs.get(k), bool) else d  # noqa: E731
    wd = num("weight_decay", 0.0)
    lr = float(attrs["lr"])
    # one torch param group per (own settings, decayed or not); "pipec_lr" is a group's own lr, which
    # deepspeed_set_lr scales with the schedule
    own = own_settings(stage, dict(model.owners()))
    by_key = {}
    for n, p in trainable.items():
        g = own.get(n, {})
        key = (g.get("lr"), float(g.get("weight_decay", wd)) if decays(n) else 0.0)
        by_key.setdefault(key, []).append(p)
    groups = [{"params": ps, "weight_decay": key_wd, "lr": key_lr if key_lr is not None else lr, "pipec_lr": key_lr}
              for (key_lr, key_wd), ps in by_key.items()]
    if stage["optimizer"]["name"] == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, betas=(num("beta1", 0.9), num("beta2", 0.999)), eps=num("eps", 1e-8))
    else:
        opt = torch.optim.SGD(groups, lr=lr, momentum=num("momentum", 0.9))
    engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config, dist_init_required=False)
    return engine, optimizer, zero, [c.__name__ for c in leaves] if zero == 3 else []


def deepspeed_set_lr(optimizer, lr, base_lr):
    for g in optimizer.param_groups:
        own = g.get("pipec_lr")
        g["lr"] = own * (lr / base_lr) if own is not None else lr


def deepspeed_gather(engine, model, main_process):
    """Whole weights and optimizer moments, under pipec's names, on process 0 (every process takes part)."""
    import deepspeed
    from deepspeed.utils import safe_get_full_optimizer_state
    weights, moments = {}, {}
    keys = [("exp_avg.", "exp_avg"), ("exp_avg_sq.", "exp_avg_sq")] if isinstance(engine.optimizer.optimizer, torch.optim.AdamW) else [("exp_avg.", "momentum_buffer")]
    for cname, comp in model.owners():
        for n, p in comp.named_parameters():
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                if main_process:
                    weights[(cname, n)] = p.detach().clone().float().cpu()
            if p.requires_grad:
                for prefix, key in keys:
                    t = safe_get_full_optimizer_state(p, key)
                    if main_process and t is not None:
                        moments[prefix + n] = t.detach().clone().float().cpu().reshape(p.ds_shape if hasattr(p, "ds_shape") else p.shape)
    return weights, moments


@torch.no_grad()
def deepspeed_unwrap(weights_by_process0, model_name, device):
    """A plain model with the trained weights on every process (broadcast from process 0), for the next stage."""
    plain = MODELS[model_name]().to(device)
    for cname, comp in plain.owners():
        for n, p in comp.named_parameters():
            t = weights_by_process0.get((cname, n)) if torch.distributed.get_rank() == 0 else torch.empty(p.shape)
            t = t.to(device)
            torch.distributed.broadcast(t, 0)
            p.copy_(t)
    return plain


# --------------------------------------------------------------------------------------------------
# Prepared data (docs/export.md): pipec prepare writes each stage's micro-batches, in pipec's order, as
# binary shards with an index. This reads micro-batch k.
# --------------------------------------------------------------------------------------------------
class Shards:
    def __init__(self, folder, stage, verify=True, world=1):
        self.folder = folder
        index_file = os.path.join(folder, "index.json")
        if not os.path.exists(index_file):
            raise SystemExit("no prepared data for stage %s at %s: run  pipec prepare PROGRAM.pipe --stage %s -o %s" % (stage, folder, stage, folder))
        with open(index_file) as f:
            self.index = json.load(f)
        if self.index.get("format") != "pipec.shards":
            raise SystemExit("%s is not a pipec shard index" % index_file)
        if self.index["graph_hash"] != GRAPH_HASH:
            raise SystemExit("%s was prepared from graph %s, this program is graph %s" % (folder, self.index["graph_hash"], GRAPH_HASH))
        if self.index["stage"] != stage:
            raise SystemExit("%s holds stage %s, not %s" % (folder, self.index["stage"], stage))
        if world is not None and self.index.get("world_size", 1) != world:
            raise SystemExit("%s was prepared for %d process(es), this run has %d: pipec prepare ... --world-size %d" % (folder, self.index.get("world_size", 1), world, world))
        self.blobs = {}
        for s in self.index["shards"]:
            with open(os.path.join(folder, s["file"]), "rb") as f:
                data = f.read()
            if verify and hashlib.sha256(data).hexdigest() != s["sha256"]:
                raise SystemExit("%s: sha256 mismatch (the shard is corrupt or was changed)" % s["file"])
            self.blobs[s["file"]] = data

    def __len__(self):
        return len(self.index["batches"])

    def micro(self, k, device):
        b = self.index["batches"][k]
        data = self.blobs[b["shard"]]
        B, T = b["batch"], b["length"]
        off = b["offset"]

        def take(dtype, count, shape):
            nonlocal off
            size = 4 * count
            t = torch.frombuffer(bytearray(data[off:off + size]), dtype=dtype).reshape(shape) if count else torch.zeros(shape, dtype=dtype)
            off += size
            return t.to(device)

        out = {
            "input_ids": take(torch.int32, B * T, (B, T)),
            "labels": take(torch.int32, B * T, (B, T)),
            "attention_mask": take(torch.int32, B * T, (B, T)),
            "image_start": [int(x) for x in take(torch.int32, B, (B,)).tolist()],
            "pixel_values": None,
        }
        if b["pixels"]:
            C, H, W = self.index["image_shape"]
            out["pixel_values"] = take(torch.float32, B * C * H * W, (B, C, H, W))
        return out


# --------------------------------------------------------------------------------------------------
# Checkpoints in pipec's layout (runtime/train/checkpoint.ts): checkpoints/NN-stage-stepNNNNNN/ with
# one folder per component (model.safetensors + config.json), optimizer.safetensors and
# trainer_state.json, built in a hidden temporary folder, published by one rename, then latest.json
# replaced atomically. The newest keep are kept, plus each stage's final one.
# --------------------------------------------------------------------------------------------------
def fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_synced(path, text):
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path, text):
    tmp = os.path.join(os.path.dirname(path), ".%s.tmp-%d" % (os.path.basename(path), os.getpid()))
    write_synced(tmp, text)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def checkpoint_name(stage_index, stage, step):
    return "%02d-%s-step%06d" % (stage_index, stage, step)


def save_checkpoint(run_dir, name, model, optimizer_tensors, state, keep, weights=None):
    root = os.path.join(run_dir, "checkpoints")
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, ".tmp-%s-%d" % (name, os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for cname, comp in model.components.items():
        d = os.path.join(tmp, cname)
        os.makedirs(d)
        tensors = {n: t for (c, n), t in weights.items() if c == cname} if weights is not None else model.component_tensors(cname)
        if tensors:
            write_safetensors(os.path.join(d, "model.safetensors"), tensors, {"pipec_component": cname})
        write_synced(os.path.join(d, "config.json"), json.dumps(model.hf_config(cname), indent=2) + "\n")
        copy_custom_package(model, cname, d)
    for ad in model.adapters.values():  # PEFT's folder, its base the component's folder once published
        tensors = {n: t for (c, n), t in weights.items() if c == ad.adapter} if weights is not None else {unwrapped_name(n): p for n, p in ad.named_parameters()}
        model.write_adapter(ad.adapter, os.path.join(tmp, ad.adapter), tensors, os.path.abspath(os.path.join(root, name, ad.component)))
    if optimizer_tensors is not None:
        write_safetensors(os.path.join(tmp, "optimizer.safetensors"), optimizer_tensors)
    write_synced(os.path.join(tmp, "trainer_state.json"), json.dumps(state, indent=2) + "\n")
    write_manifest(tmp)
    fsync_dir(tmp)
    final = os.path.join(root, name)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    fsync_dir(root)
    write_atomic(os.path.join(root, "latest.json"), json.dumps({"checkpoint": name}) + "\n")
    protected = set(state["stage_checkpoints"].values())
    names = sorted(n for n in os.listdir(root) if re.match(r"^\d{2}-.+-step\d{6}$", n))
    periodic = [n for n in names if n not in protected]
    for n in periodic[: max(0, len(periodic) - max(1, keep))]:
        shutil.rmtree(os.path.join(root, n), ignore_errors=True)
    for n in os.listdir(root):
        if n.startswith(".tmp-") and not n.endswith("-%d" % os.getpid()):
            shutil.rmtree(os.path.join(root, n), ignore_errors=True)
    return final


def write_manifest(folder):
    """manifest.json as pipec writes it (runtime/train/manifest.ts): every file of the checkpoint with its
    size and SHA-256, written last, so pipec's hand-off, resume and merge check a checkpoint of this trainer
    as one of its own."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for n in sorted(names):
            path = os.path.join(dirpath, n)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
            files[os.path.relpath(path, folder).replace(os.sep, "/")] = {"size": os.path.getsize(path), "sha256": h.hexdigest()}
    write_synced(os.path.join(folder, "manifest.json"), json.dumps({"format": "pipec.manifest", "version": 1, "files": dict(sorted(files.items()))}, indent=2) + "\n")


def copy_custom_package(model, cname, folder):
    """A user's class is saved with its package's files beside config.json (whose auto_map names them), so
    transformers loads the folder with trust_remote_code=True. Packages with sub-folders are not copied."""
    spec = next(c for c in model.spec["components"] if c["name"] == cname)
    if not spec.get("python"):
        return
    pkg = os.path.join(os.path.dirname(os.path.abspath(__file__)), spec["python"]["package"])
    names = [n for n in sorted(os.listdir(pkg)) if n.endswith(".py") and n != "__init__.py"]
    if any(os.path.isdir(os.path.join(pkg, n)) and not n.startswith("__") for n in os.listdir(pkg)):
        return
    for n in names:
        shutil.copyfile(os.path.join(pkg, n), os.path.join(folder, n))


def latest_checkpoint(run_dir):
    f = os.path.join(run_dir, "checkpoints", "latest.json")
    if not os.path.exists(f):
        return None
    with open(f) as fh:
        name = json.load(fh)["checkpoint"]
    d = os.path.join(run_dir, "checkpoints", name)
    return d if os.path.exists(os.path.join(d, "trainer_state.json")) else None


def append_metrics(run_dir, row):
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def truncate_metrics(run_dir, stage_index, step):
    """Drops metric lines after the checkpoint a resume starts from."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [json.loads(x) for x in f if x.strip()]
    kept = [r for r in rows if (r["stage_index"], r["step"]) <= (stage_index, step)]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


STAGES = []  # @STAGES@ the export writes the program's stages in place of this line (runtime/export/torch-lib.ts)
# --------------------------------------------------------------------------------------------------
# The stage loop (runtime/train/run.ts).
# --------------------------------------------------------------------------------------------------
def qlora(model, stage, device, sharded=False, bnb=None):
    """QLoRA (`quantize: nf4 | int8` on an adapter): the adapted component, frozen in this stage, is held by
    bitsandbytes on CUDA (model.py's quantize_component). Elsewhere -- on CPU, without bitsandbytes, under
    --fsdp / --deepspeed, for a user's class -- it stays in full precision, and the line returned says so
    (once per model). bnb: the bitsandbytes module (imported here when None). Returns the line(s) to print."""
    lines = []
    for ad in model.adapters.values():
        comp = model.components[ad.component]
        if ad.quantize == "none" or ad.component in stage["train"] or getattr(comp, "qlora_done", False):
            continue
        comp.qlora_done = True
        why = None
        if device.type != "cuda":
            why = "this run is on %s (bitsandbytes quantizes on CUDA)" % device.type
        elif sharded:
            why = "--fsdp / --deepspeed shard the base, and this trainer does not shard bitsandbytes' quantized weights"
        elif not isinstance(comp, Component):
            why = "`%s` is a user's class (%s), whose layers this trainer does not replace" % (ad.component, type(comp).__name__)
        elif bnb is None:
            try:
                import bitsandbytes as bnb
            except ImportError as e:
                why = "bitsandbytes is not installed (%s; pip install bitsandbytes)" % e
        if why:
            lines.append("note: adapter %s declares quantize: %s (QLoRA), but %s: the base `%s` is held and computed in full precision (fp32)" % (ad.adapter, ad.quantize, why, ad.component))
            continue
        n = quantize_component(comp, ad.quantize, device, bnb)
        lines.append("adapter %s: QLoRA, %d linear weights of `%s` held in %s by bitsandbytes %s (lm_head and the embeddings in full precision)" % (
            ad.adapter, n, ad.component, ad.quantize, getattr(bnb, "__version__", "")))
    return "\n".join(lines) or None


def handoffs(stage, model):
    """What a stage takes over from earlier stages (runtime/train/run.ts handoffsOf): the graph's hand-offs,
    and an adapter that the stage it continues from trained."""
    out = list(stage["handoff"])
    prev = next((s for s in STAGES if s["name"] == stage["after"]), None)
    for ad in model.adapters.values():
        if prev is not None and ad.adapter in prev["train"] and not any(h["component"] == ad.adapter for h in out):
            out.append({"component": ad.adapter, "from": prev["name"]})
    return out


def forward(model, batch, autocast_dtype):
    if autocast_dtype is None:
        return model(**batch)
    with torch.autocast(device_type="cuda", dtype=autocast_dtype):
        return model(**batch)


def keep_freed_cpu_memory():
    """On a CPU run, glibc's malloc is told to keep freed memory for reuse instead of returning it to the
    system: every step allocates and frees the same large tensors (logits [B, T, V], activations), and by
    default glibc unmaps big blocks on free and trims the heap, so each step page-faults its tensors in afresh.
    Measured on the 7.25M-parameter llama of bench:peer (8 x 128 tokens, torch 2.13, 2 threads): forward +
    backward 443 ms -> 286 ms a step. The process keeps its peak heap. PIPEC_MALLOC=default leaves glibc's
    defaults. (The same as starting python with MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647.)"""
    if os.environ.get("PIPEC_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): nothing to tune
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc's largest: blocks below it come from the heap
    libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1)  # and the heap's top is not given back


def train(args):
    # Data parallelism under torchrun: every process holds the whole model, reads its own micro-batches of
    # each step and the gradients are summed over processes (process 0 writes metrics and checkpoints).
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_cpu_memory()
    if args.fsdp and args.deepspeed:
        raise SystemExit("--fsdp and --deepspeed are two ways to shard: give one")
    if args.fsdp:
        why = fsdp_available()
        if why:
            raise SystemExit(why)
        if "WORLD_SIZE" not in os.environ:
            raise SystemExit("--fsdp runs under torchrun: torchrun --nproc_per_node N train.py --fsdp %s ..." % args.fsdp)
    if args.deepspeed:
        if device.type == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed picks its accelerator on import
        why = deepspeed_available()
        if why:
            raise SystemExit(why)
        if "WORLD_SIZE" not in os.environ:
            raise SystemExit("--deepspeed runs under torchrun: torchrun --nproc_per_node N train.py --deepspeed %s ..." % args.deepspeed)
        with open(args.deepspeed) as f:
            args.deepspeed_config = json.load(f)
    if world > 1 or args.fsdp or args.deepspeed:
        import torch.distributed as dist
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if args.deepspeed:
            import deepspeed
            deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
        else:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main_process = rank == 0
    distributed = world > 1 or bool(args.fsdp) or bool(args.deepspeed)
    try:
        train_stages(args, device, world, rank, main_process)
        if distributed:  # every process done (e.g. --stop-after) before any takes the process group down
            torch.distributed.barrier()
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    return distributed


def leave_without_finalising():
    """Ends a distributed process that has finished its work: every checkpoint and metric is written and
    closed, and every process has passed the last barrier. The interpreter's finalisation is skipped on
    purpose: there, gloo and FSDP threads still holding tensors can abort the process ("terminate called
    without an active exception", SIGABRT; pytorch/pytorch#90549), and torchrun then reports a run that
    succeeded as failed. Seen about once in 20 FSDP runs on a loaded 2-core machine."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def train_stages(args, device, world, rank, main_process):
    run_dir = args.out
    os.makedirs(run_dir, exist_ok=True)
    resume = None
    if args.resume:
        d = latest_checkpoint(run_dir)
        if d is None:
            raise SystemExit("nothing to resume in %s" % run_dir)
        with open(os.path.join(d, "trainer_state.json")) as f:
            st = json.load(f)
        if st["graph_hash"] != GRAPH_HASH:
            raise SystemExit("checkpoint graph %s, this program %s: resume with the program that wrote it" % (st["graph_hash"], GRAPH_HASH))
        resume = (d, st)
        print("resuming from %s (stage %s, step %d/%d)" % (d, st["stage"], st["step"], st["total_steps"]), flush=True)
        if main_process:
            truncate_metrics(run_dir, st["stage_index"], st["step"])
    elif main_process and os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        os.remove(os.path.join(run_dir, "metrics.jsonl"))
    graph = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graph.json")
    if main_process and os.path.exists(graph):  # RUN/graph.json, as pipec run writes it
        with open(graph) as f:
            write_atomic(os.path.join(run_dir, "graph.json"), f.read())
    stage_ckpts = dict(resume[1]["stage_checkpoints"]) if resume else {}
    model, model_name, total_steps = None, None, 0
    for si, stage in enumerate(STAGES):
        if resume and si < resume[1]["stage_index"]:
            continue
        fresh = False
        if model is None or model_name != stage["model"]:
            model = MODELS[stage["model"]]().to(device)
            model_name = stage["model"]
            fresh = True
            from_init = {c for c, _ in model.owners() if args.init and os.path.isdir(os.path.join(args.init, c))}
            model.init_fresh(stage["seed"], args.init_mode, skip=from_init | {c for c, w in model.spec["weights"].items() if w})
            for cname, comp in model.owners():  # components, then adapters (prepare --init writes both)
                if cname in from_init:
                    model.load_component(cname, os.path.join(args.init, cname))
                declared = model.spec["weights"].get(cname)
                if declared:
                    model.load_component(cname, os.path.join(args.base_dir, declared))
        if fresh and main_process:
            for cname, comp in model.components.items():
                if getattr(comp, "pipec_component", None):  # a user's class, from the package carried beside model.py
                    print("component %s: %s from %s" % (cname, type(comp).__name__, type(comp).__module__), flush=True)
        if fresh and si > 0:
            for h in handoffs(stage, model):
                if h["from"] in stage_ckpts:
                    model.load_component(h["component"], os.path.join(run_dir, "checkpoints", stage_ckpts[h["from"]], h["component"]))
        here = resume if resume and si == resume[1]["stage_index"] else None
        if here:
            for cname, _ in model.owners():
                model.load_component(cname, os.path.join(here[0], cname))
            if here[1]["final"]:
                continue
        # gradient_checkpointing: each layer recomputed in backward (model.py's Component.run_layer)
        model.gradient_checkpointing_enable(bool(stage.get("gradient_checkpointing")))
        # Freezing: only the stage's train components and adapters get gradients and optimizer state.
        trainable = {}
        for cname, comp in model.owners():
            on = cname in stage["train"]
            for n, prm in comp.named_parameters():
                prm.requires_grad_(on)
                if on:
                    trainable[n] = prm
        note = qlora(model, stage, device, sharded=bool(args.fsdp or args.deepspeed))
        if note and main_process:
            print(note, flush=True)
        # Sharded (--fsdp): wrapped after the weights are in and the freezing is set; the optimizer's state is
        # then made for (and kept as) this process's slices.
        ds = None  # (engine, its optimizer, ZeRO stage) under --deepspeed
        if args.deepspeed:
            if here and here[1]["step"] > 0:
                raise SystemExit("--deepspeed resumes at a stage's start; stage %s stopped at step %d: resume it with --fsdp or without sharding (the checkpoint is pipec's layout)" % (stage["name"], here[1]["step"]))
            engine, ds_optimizer, zero, leaves = deepspeed_wrap(model, stage, trainable, args.deepspeed_config, device)
            ds = (engine, ds_optimizer, zero)
            run_model = engine
        else:
            run_model = fsdp_wrap(model, args.fsdp, device) if args.fsdp else model
        optimizer = Optimizer(stage["optimizer"]["name"], stage["optimizer"]["attrs"], trainable, own_settings(stage, dict(model.owners())))
        step = 0
        if here:
            step = here[1]["step"]
            if here[1].get("optimizer") and not ds:
                whole = read_safetensors(os.path.join(here[0], "optimizer.safetensors"))
                if args.fsdp:
                    fsdp_load_optimizer(run_model, optimizer, whole, here[1]["optimizer"]["step"])
                else:
                    optimizer.load_state(whole, here[1]["optimizer"]["step"])
        data = Shards(os.path.join(args.data, stage["name"]), stage["name"], verify=not args.no_verify, world=world)
        steps = data.index["steps"]
        acc = stage["accumulate"]
        if len(data) < steps * acc * world:
            raise SystemExit("stage %s: %d prepared micro-batches, %d needed" % (stage["name"], len(data), steps * acc * world))
        base_lr = float(stage["optimizer"]["attrs"]["lr"])
        # bf16/fp16: fp32 weights and optimizer state, the forward pass under CUDA autocast; fp16 with loss
        # scaling (DeepSpeed scales by its own fp16 section). Elsewhere the stage computes in fp32.
        autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(stage["precision"]) if device.type == "cuda" else None
        if stage["precision"] != "fp32" and autocast_dtype is None and main_process:
            print("note: stage %s declares %s; this run computes in fp32 (autocast is used on CUDA only)" % (stage["name"], stage["precision"]), flush=True)
        scaler = LossScaler() if autocast_dtype == torch.float16 and not ds else None
        if main_process:
            print("stage %s: train [%s], frozen [%s]; %d steps of %d samples (batch %d x accumulate %d x %d process(es))%s%s" % (
                stage["name"], ", ".join(stage["train"]), ", ".join(stage["freeze"]), steps, stage["batch"] * acc * world, stage["batch"], acc, world,
                (", sharded by FSDP (%s)" % FSDP_STRATEGIES[args.fsdp]) if args.fsdp else (", DeepSpeed ZeRO-%d%s" % (ds[2], (", leaf modules %s" % ", ".join(leaves)) if leaves else "")) if ds else "",
                (", from step %d" % step) if step else ""), flush=True)
        def checkpoint(final):
            name = checkpoint_name(si, stage["name"], step)
            if final:
                stage_ckpts[stage["name"]] = name
            state = {
                "format": "pipec.checkpoint", "version": 1, "graph_hash": GRAPH_HASH, "stage": stage["name"], "stage_index": si,
                "step": step, "total_steps": steps, "final": final, "stage_checkpoints": dict(stage_ckpts),
                "optimizer": {"name": optimizer.name, "step": optimizer.step_count},
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if ds:  # every process takes part in gathering; process 0 writes
                weights, moments = deepspeed_gather(ds[0], model, main_process)
                state["optimizer"]["step"] = step
                if main_process:
                    save_checkpoint(run_dir, name, model, moments, state, stage["checkpoint"]["keep"], weights=weights)
                last_weights[0] = weights
            elif args.fsdp:  # every process takes part in gathering; process 0 writes
                from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
                opt_tensors = fsdp_optimizer_tensors(run_model, optimizer)
                with FSDP.summon_full_params(run_model, writeback=False, rank0_only=True):
                    if main_process:
                        save_checkpoint(run_dir, name, model, opt_tensors, state, stage["checkpoint"]["keep"])
            elif main_process:
                save_checkpoint(run_dir, name, model, optimizer.state_tensors(), state, stage["checkpoint"]["keep"])
            if world > 1:
                torch.distributed.barrier()

        last_weights = [None]  # under --deepspeed: the weights the last checkpoint gathered (for the next stage)
        t0 = time.time()
        last = float("nan")
        while step < steps:
            loss_sum = lm_sum = aux_sum = 0.0
            tokens = 0
            for a in range(acc):
                # micro-batches [step * acc * world, (step + 1) * acc * world) make up the step, in pipec's order
                k = (step * world + rank) * acc + a
                batch = data.micro(k, device)
                tokens += int(batch["attention_mask"].sum())
                model.lora_stream(stage["seed"], "%s/%d" % (stage["name"], k))  # LoRA dropout's masks follow the micro-batch, as pipec's
                out = forward(run_model, batch, autocast_dtype)
                loss = out["loss"]
                if ds:
                    # DeepSpeed scales each micro-batch's loss by 1 / accumulate and averages over the processes
                    ds[0].backward(loss if loss is not None and loss.requires_grad else out["logits"].sum() * 0)
                    if a + 1 < acc:
                        ds[0].step()  # within the accumulation: no update
                    if loss is None:
                        continue
                elif loss is None:
                    if args.fsdp:  # no labelled token here, but the other processes' backward passes wait on this one's
                        (out["logits"].sum() * 0).backward()
                    continue
                elif loss.requires_grad:
                    (loss * scaler.scale if scaler else loss).backward()  # gradients add up over the micro-batches
                loss_sum += float(loss.detach())
                lm_sum += float(out["lm_loss"].detach()) if out["lm_loss"] is not None else 0.0
                aux_sum += float(out["aux_loss"].detach()) if out["aux_loss"] is not None else 0.0
            if world > 1:
                sums = torch.tensor([loss_sum, lm_sum, aux_sum, float(tokens)], dtype=torch.float64, device=device)
                torch.distributed.all_reduce(sums)
                loss_sum, lm_sum, aux_sum, tokens = sums[0].item(), sums[1].item(), sums[2].item(), int(sums[3].item())
                if not args.fsdp and not ds:  # FSDP and DeepSpeed have already reduced (and averaged) them over the processes
                    all_reduce_grads(list(trainable.values()), world)
            model.lora_stream()
            n_micro = acc * world
            loss_v, lm_v, aux_v = loss_sum / n_micro, lm_sum / n_micro, aux_sum / n_micro
            if not math.isfinite(loss_v):
                raise SystemExit("the loss is %s in stage %s at step %d; the last good checkpoint is kept" % (loss_v, stage["name"], step + 1))
            lr = base_lr * lr_multiplier(stage["schedule"], step, steps)
            if ds:  # the accumulation boundary: DeepSpeed clips (gradient_clipping) and updates
                deepspeed_set_lr(ds[1], lr, base_lr)
                ds[0].step()
                grad_norm = float(ds[0].get_global_grad_norm() or 0.0)
            else:
                divide = (acc if args.fsdp else n_micro) * (scaler.scale if scaler else 1)
                if divide != 1:
                    with torch.no_grad():
                        for prm in trainable.values():
                            if prm.grad is not None:
                                prm.grad.div_(divide)
                grad_norm = clip_by_global_norm(list(trainable.values()), stage["clip_grad"], sharded_on=device if args.fsdp else None)
                if scaler:  # the norm is over all processes' gradients, so every process skips or not alike
                    scaler.update(math.isfinite(grad_norm))
                if scaler is None or math.isfinite(grad_norm):
                    optimizer.apply(lr)
                for prm in trainable.values():
                    prm.grad = None
            step += 1
            total_steps += 1
            last = loss_v
            row = {"stage": stage["name"], "stage_index": si, "step": step, "loss": loss_v, "lm_loss": lm_v}
            if aux_v:
                row["aux_loss"] = aux_v
            if not math.isfinite(grad_norm):  # an fp16 step the loss scaler skipped (metrics.jsonl is strict JSON)
                row["skipped"] = "fp16 gradient overflow, loss scale now %g" % scaler.scale
                grad_norm = 0.0
            row.update({"lr": lr, "grad_norm": grad_norm, "tokens": tokens, "elapsed_s": time.time() - t0})
            if main_process:
                append_metrics(run_dir, row)
            if main_process and (step % args.log_every == 0 or step == steps):
                print("%s step %d/%d loss %.4f lr %.3g" % (stage["name"], step, steps, loss_v, lr), flush=True)
            if step < steps and stage["checkpoint"]["every"] > 0 and step % stage["checkpoint"]["every"] == 0:
                checkpoint(False)
            if args.stop_after is not None and total_steps >= args.stop_after:
                if main_process:
                    print("stopped after %d steps (--stop-after)" % total_steps, flush=True)
                return
        checkpoint(True)
        if main_process:
            print("stage %s done: %d steps in %.1f s, final loss %.4f" % (stage["name"], steps, time.time() - t0, last), flush=True)
        if args.fsdp and args.until != stage["name"] and si + 1 < len(STAGES):
            model = fsdp_unwrap(run_model, model_name, device)
        if ds and args.until != stage["name"] and si + 1 < len(STAGES):
            model = deepspeed_unwrap(last_weights[0], model_name, device)
        if args.until == stage["name"]:
            return


@torch.no_grad()
def eval_logits(args):
    """Writes the logits of one prepared micro-batch under a checkpoint as raw float32 (for comparisons)."""
    stage = next(s for s in STAGES if s["name"] == args.stage)
    model = MODELS[stage["model"]]()
    for cname, _ in model.owners():  # the components and, in their PEFT folders, the adapters
        model.load_component(cname, os.path.join(args.checkpoint, cname))
    data = Shards(os.path.join(args.data, stage["name"]), stage["name"], verify=not args.no_verify, world=None)  # any world size: micro-batch k is pipec's k
    out = model(**data.micro(args.micro, torch.device("cpu")))
    with open(args.eval_logits, "wb") as f:
        f.write(tensor_bytes(out["logits"]))
    print("logits %s -> %s" % (list(out["logits"].shape), args.eval_logits))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data", help="prepared data root: DATA/<stage>/index.json (pipec prepare)")
    ap.add_argument("--out", default="run", help="run directory (metrics.jsonl, checkpoints/)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest.json")
    ap.add_argument("--init", help="initial weights: a folder with one sub-folder per component (e.g. a pipec checkpoint)")
    ap.add_argument("--init-mode", choices=["pipec", "torch"], default="pipec", help="fresh weights: pipec's seeded streams (bit-compatible, slow for big models) or torch.normal")
    ap.add_argument("--base-dir", default=".", help="where the program's relative weight paths resolve (the .pipe file's folder)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fsdp", choices=sorted(FSDP_STRATEGIES), help="shard with FSDP under torchrun (PyTorch >= 2.0): full = FULL_SHARD (ZeRO-3), grad_op = SHARD_GRAD_OP (ZeRO-2)")
    ap.add_argument("--deepspeed", metavar="CONFIG", help="train with DeepSpeed under torchrun, with this config (launch/<stage>.deepspeed.json; DeepSpeed >= 0.13)")
    ap.add_argument("--stop-after", type=int, help="stop (as if killed) after this many optimizer steps in total")
    ap.add_argument("--until", help="stop after this stage's final checkpoint (continue later with --resume)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--no-verify", action="store_true", help="skip the shards' sha256 check")
    ap.add_argument("--eval-logits", help="write the logits of one micro-batch (with --checkpoint, --stage, --micro) and exit")
    ap.add_argument("--checkpoint")
    ap.add_argument("--stage")
    ap.add_argument("--micro", type=int, default=0)
    args = ap.parse_args(argv)
    if args.eval_logits:
        eval_logits(args)
    elif train(args):
        leave_without_finalising()


if __name__ == "__main__":
    main()
