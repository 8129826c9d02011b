#!/usr/bin/env python3
"""PyTorch side of the training benchmark: a compact Qwen3 (same math and
tensor names as Hugging Face's Qwen3ForCausalLM, untied lm_head) trained on
random tokens with AdamW + grad clipping, CPU.  Prints one JSON line.

--mode picks the PyTorch 2.x peer (the issue's three, and one more):
  eager             fp32, attention by F.scaled_dot_product_attention
  autocast          eager under torch.autocast("cpu", bfloat16), fp32 weights
  compile           torch.compile(model), fp32
  compile-autocast  torch.compile(model) under bf16 autocast
On a torch without scaled_dot_product_attention (Debian 12's 1.13) only
eager runs, with attention written out.

  torch_train.py --steps 10 --warmup-steps 2 --threads 2 --mode compile
  torch_train.py --forward-only --steps 10 --threads 1
"""
import argparse
import json
import os
import time

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

SDPA = hasattr(F, "scaled_dot_product_attention")
MODES = ("eager", "autocast", "compile", "compile-autocast")


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.h, self.kv, self.d = a.heads, a.kv_heads, a.head_dim
        self.q_proj = nn.Linear(a.hidden, a.heads * a.head_dim, bias=False)
        self.k_proj = nn.Linear(a.hidden, a.kv_heads * a.head_dim, bias=False)
        self.v_proj = nn.Linear(a.hidden, a.kv_heads * a.head_dim, bias=False)
        self.o_proj = nn.Linear(a.heads * a.head_dim, a.hidden, bias=False)
        self.q_norm = RMSNorm(a.head_dim, a.eps)   # per head, before RoPE
        self.k_norm = RMSNorm(a.head_dim, a.eps)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, t, self.h, self.d)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, t, self.kv, self.d)).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.kv             # query head j reads kv head j // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        if SDPA:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o_proj(o.transpose(1, 2).reshape(b, t, self.h * self.d))
        s = torch.matmul(q, k.transpose(-1, -2)) * (self.d ** -0.5)
        s = s.masked_fill(mask, float("-inf"))
        o = torch.matmul(torch.softmax(s, dim=-1), v)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, self.h * self.d))


class MLP(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.gate_proj = nn.Linear(a.hidden, a.inter, bias=False)
        self.up_proj = nn.Linear(a.hidden, a.inter, bias=False)
        self.down_proj = nn.Linear(a.inter, a.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm = RMSNorm(a.hidden, a.eps)
        self.self_attn = Attention(a)
        self.post_attention_layernorm = RMSNorm(a.hidden, a.eps)
        self.mlp = MLP(a)

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Body(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.layers = nn.ModuleList([Layer(a) for _ in range(a.layers)])
        self.norm = RMSNorm(a.hidden, a.eps)


class Qwen3(nn.Module):
    """Parameter names match HF (model.layers.N.self_attn.q_proj.weight, ...)."""

    def __init__(self, a):
        super().__init__()
        self.model = Body(a)
        self.lm_head = nn.Linear(a.hidden, a.vocab, bias=False)
        self.theta, self.d = a.rope_theta, a.head_dim

    def rope(self, t):
        inv = 1.0 / (self.theta ** (torch.arange(0, self.d, 2, dtype=torch.float32) / self.d))
        ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None, :]
        ang = torch.cat((ang, ang), dim=-1)
        return ang.cos(), ang.sin()

    def forward(self, ids):
        t = ids.shape[1]
        cos, sin = self.rope(t)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        h = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin, mask)
        return self.lm_head(self.model.norm(h))


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def make_opt(model, a):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": nodecay, "weight_decay": 0.0}],
                             lr=a.lr, betas=(0.9, 0.95), eps=1e-8)


def run(a, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(a.seed)
    model = Qwen3(a)
    init_weights(model, a.seed)
    nparams = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(a.seed + 1)
    batches = [torch.randint(0, a.vocab, (a.batch, a.seq + 1), generator=g)
               for _ in range(4)]
    opt = None if a.forward_only else make_opt(model, a)
    loss_v = float("nan")
    fwd = torch.compile(model) if a.mode.startswith("compile") else model
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.mode.endswith("autocast") \
        else contextlib.nullcontext

    def step(i):
        nonlocal loss_v
        data = batches[i % len(batches)]
        x, y = data[:, :-1], data[:, 1:]
        if a.forward_only:
            with torch.no_grad(), cast():
                fwd(x)
            return
        opt.zero_grad(set_to_none=True)
        with cast():
            z = fwd(x)
        loss = F.cross_entropy(z.float().reshape(-1, a.vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_v = loss.item()

    model.train(not a.forward_only)
    t0 = time.perf_counter()
    for i in range(a.warmup_steps):
        step(i)
    warm = time.perf_counter() - t0
    dt, done = float("inf"), a.warmup_steps
    for _ in range(a.repeat):   # best of R timed runs, as bench_train --repeat
        t0 = time.perf_counter()
        for i in range(a.steps):
            step(done + i)
        dt = min(dt, time.perf_counter() - t0)
        done += a.steps
    tokens = a.batch * a.seq * a.steps
    return {"impl": "pytorch", "torch": torch.__version__,
            "mode": "forward" if a.forward_only else "train", "peer": a.mode,
            "sdpa": SDPA, "warmup_s": round(warm, 1),
            "threads": threads, "tokens_per_s": round(tokens / dt, 1),
            "ms_per_step": round(1000.0 * dt / a.steps, 2), "params": nparams,
            "steps": a.steps, "warmup_steps": a.warmup_steps, "repeat": a.repeat,
            "batch": a.batch, "seq": a.seq, "hidden": a.hidden,
            "layers": a.layers, "heads": a.heads, "kv_heads": a.kv_heads,
            "head_dim": a.head_dim, "inter": a.inter, "vocab": a.vocab,
            "last_loss": None if a.forward_only else round(loss_v, 4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    arg = ap.add_argument
    arg("--hidden", type=int, default=256)
    arg("--layers", type=int, default=4)
    arg("--heads", type=int, default=8)
    arg("--kv-heads", type=int, default=4)
    arg("--head-dim", type=int, default=32)
    arg("--inter", type=int, default=768)
    arg("--vocab", type=int, default=512)
    arg("--batch", type=int, default=8)
    arg("--seq", type=int, default=256)
    arg("--steps", type=int, default=10, help="timed steps")
    arg("--warmup-steps", type=int, default=2, help="untimed steps first")
    arg("--repeat", type=int, default=1, help="best of R timed runs of --steps (as bench_train)")
    arg("--threads", default="1", help="N, or 'best' (tries 1 and nproc)")
    arg("--forward-only", action="store_true", help="inference tokens/s, no grad")
    arg("--mode", choices=MODES, default="eager", help="which PyTorch peer (see above)")
    arg("--lr", type=float, default=1e-3)
    arg("--rope-theta", type=float, default=10000.0)
    arg("--eps", type=float, default=1e-6)
    arg("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.heads % a.kv_heads or a.head_dim % 2 or a.steps < 1 or a.repeat < 1:
        ap.error("need heads %% kv-heads == 0, even head-dim, steps >= 1, repeat >= 1")
    if a.mode != "eager" and not SDPA:
        ap.error("--mode %s needs PyTorch 2.x (this is %s)" % (a.mode, torch.__version__))
    if a.threads == "best":
        tried = [run(a, t) for t in sorted({1, os.cpu_count() or 1})]
        best = max(tried, key=lambda r: r["tokens_per_s"])
        best["tried"] = {str(r["threads"]): r["tokens_per_s"] for r in tried}
        print(json.dumps(best))
    else:
        print(json.dumps(run(a, int(a.threads))))


if __name__ == "__main__":
    main()
