#!/usr/bin/env python3
"""Reference fixtures for the C engine's white-box tests, computed with
Hugging Face transformers' own Qwen3ForCausalLM (eager attention, float32).

Dev-side only: the test suite reads the committed files under tests/fixtures/
and never runs Python.  See tests/fixtures/README.md for what each file holds.

  gen_fixtures.py [--out DIR]                 write untied/, tied/, mixed/, bf16/,
                                              neftune/
  gen_fixtures.py --check-dir DIR --ids "1,2,3" --out FILE.json
                                              logits of a model dir (e.g. one
                                              written by wdl) on one sequence

Running the generator twice gives byte-identical files (same torch and
transformers versions): every random draw comes from a seeded generator, one
thread, deterministic algorithms.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import torch
import torch.nn.functional as F

import transformers
from transformers import Qwen3Config, Qwen3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- fixed fixture settings ------------------------------------------------
B, T, V = 2, 12, 97
IGNORE = -100
PROMPT_LEN = (4, 6)           # masked "prompt" positions of sequence 0 and 1
BATCH_SEED = 1234
SEEDS = {"untied": 11, "tied": 22, "weak": 33, "strong": 44}
MAT_STD, NORM_STD = 0.15, 0.2
LAMBDA = 0.42
ADAMW = {"lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1,
         "clip": 1.0,
         "decay_rule": "2-D weights decay, 1-D norm weights do not"}
STEPS_SINGLE, STEPS_MIXED = 5, 3
# NEFTune: alpha, the hash seed, each row's example key and real length
# (sequence 1 ends at 9: positions 9.. are padding, targets ignored)
NEFTUNE = {"alpha": 5.0, "seed": 5, "keys": [7, 12345678901], "lens": [12, 9]}

HF_FORWARD = """\
HF Qwen3ForCausalLM forward relied on (transformers %s, eager attention, float32):
  h = embed_tokens[ids]
  per layer l:
    x = RMSNorm(h; input_layernorm)      RMSNorm(x;w) = w * (x * rsqrt(mean(x^2) + eps))
    q = q_proj(x) viewed [.., H, head_dim];  q = RMSNorm(q; q_norm) per head (over head_dim)
    k = k_proj(x) viewed [.., KV, head_dim]; k = RMSNorm(k; k_norm) per head
    v = v_proj(x)                            (no biases anywhere)
    RoPE (rotate-half / NeoX layout) on q, k after the norms:
      inv_freq[i] = 1 / theta^(2i/head_dim), i < head_dim/2 (float32)
      ang[t,i] = t * inv_freq[i] (float32), cos/sin of [ang, ang] (concatenated)
      out = x*cos + rotate_half(x)*sin, rotate_half(x) = [-x2, x1], x1/x2 = halves
    GQA: query head j uses kv head j // (H/KV) (repeat_kv, contiguous groups)
    scores = q k^T * head_dim^-0.5 + causal mask (finfo.min above diagonal),
    softmax in float32, o = softmax @ v, heads concatenated -> o_proj
    h = h + o_proj(...)
    x = RMSNorm(h; post_attention_layernorm)
    h = h + down_proj(silu(gate_proj(x)) * up_proj(x))
  logits = lm_head(RMSNorm(h; model.norm))  (lm_head.weight is embed_tokens.weight when tied)
  positions are 0..T-1 for every sequence, no attention mask, no padding."""


def setup_determinism():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def make_config(rope_theta, tie):
    return Qwen3Config(
        hidden_size=32, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        vocab_size=V, max_position_embeddings=64, rms_norm_eps=1e-6,
        rope_theta=rope_theta, tie_word_embeddings=tie,
        attn_implementation="eager")


def redraw(model, seed):
    """Informative weights: matrices N(0, 0.15^2), norm weights 1 + 0.2 N(0,1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * MAT_STD)
            else:
                assert name.endswith("norm.weight"), name
                p.copy_(1.0 + NORM_STD * torch.randn(p.shape, generator=g))


def load_model(path):
    kw = {"attn_implementation": "eager"}
    try:    # transformers >= 4.56 calls it dtype, older ones torch_dtype
        return Qwen3ForCausalLM.from_pretrained(path, dtype=torch.float32, **kw)
    except TypeError:
        return Qwen3ForCausalLM.from_pretrained(path, torch_dtype=torch.float32, **kw)


def save_model_dir(model, path, rope_theta):
    """save_pretrained, then wdl's fields; keep only config.json + model.safetensors."""
    if os.path.exists(path):
        shutil.rmtree(path)
    model.save_pretrained(path, safe_serialization=True)
    for f in os.listdir(path):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(path, f))
    cpath = os.path.join(path, "config.json")
    with open(cpath) as f:
        cfg = json.load(f)
    # transformers 5 writes rope_theta only inside rope_parameters; older
    # readers (and the PIPELINE contract) look for it at the top level.
    cfg["rope_theta"] = rope_theta
    cfg["wdl_tokenizer"] = "byte"
    cfg["wdl_template"] = "plain"
    with open(cpath, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def make_batch():
    g = torch.Generator().manual_seed(BATCH_SEED)
    ids = torch.randint(0, V, (B, T), generator=g)
    tgt = torch.empty_like(ids)
    tgt[:, :T - 1] = ids[:, 1:]
    tgt[:, T - 1] = torch.randint(0, V, (B,), generator=g)
    for b, n in enumerate(PROMPT_LEN):
        tgt[b, :n] = IGNORE
    return ids, tgt


def ce(logits, tgt):
    return F.cross_entropy(logits.float().reshape(-1, V), tgt.reshape(-1),
                           ignore_index=IGNORE, reduction="mean")


def make_opt(model):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.dim() >= 2]
    nodecay = [p for n, p in named if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": ADAMW["weight_decay"]},
         {"params": nodecay, "weight_decay": 0.0}],
        lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"],
        foreach=False)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def write_ref(dirpath, tensors, meta):
    from safetensors.torch import save_file
    out = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(out, os.path.join(dirpath, "ref.safetensors"))
    with open(os.path.join(dirpath, "ref.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


def fresh_model(name, rope_theta, tie, seed, path):
    """Draw, save, and reload from disk so the reference is computed on
    exactly the weights the C side will read."""
    m = Qwen3ForCausalLM(make_config(rope_theta, tie))
    redraw(m, seed)
    save_model_dir(m, path, rope_theta)
    r = load_model(path)
    mine, theirs = dict(m.named_parameters()), dict(r.named_parameters())
    assert mine.keys() == theirs.keys(), name
    for k in mine:
        assert torch.equal(mine[k], theirs[k]), k
    if tie:
        assert r.lm_head.weight is r.model.embed_tokens.weight
    return r


def check_tied_file(path):
    from safetensors import safe_open
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "lm_head.weight" not in keys, "tied model must not store lm_head.weight"
    return keys


def single_fixture(root, name, rope_theta, tie, ids, tgt):
    d = os.path.join(root, name)
    model = fresh_model(name, rope_theta, tie, SEEDS[name], d)
    if tie:
        check_tied_file(d)
    model.train()           # dropout is 0.0; train() only matters for grads
    params = [(n, p) for n, p in model.named_parameters()]
    opt = make_opt(model)
    tensors = {"input_ids": ids.float(), "targets": tgt.float()}
    losses, norms, meta = [], [], {}
    for step in range(STEPS_SINGLE):
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits
        loss = ce(logits, tgt)
        loss.backward()
        if step == 0:
            z = logits.detach()
            lp = torch.log_softmax(z.double(), dim=-1)
            tensors["logits"] = z
            tensors["entropy"] = -(lp.exp() * lp).sum(-1)
            tensors["nll"] = F.cross_entropy(z.reshape(-1, V), tgt.reshape(-1),
                                             ignore_index=IGNORE,
                                             reduction="none").reshape(B, T)
            mask = tgt != IGNORE
            nll64 = -lp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            meta["loss"] = loss.item()
            meta["loss_f64"] = nll64[mask].mean().item()
            meta["grad_max_abs"] = {}
            for n, p in params:
                tensors["grad." + n] = p.grad.detach().clone()
                meta["grad_max_abs"][n] = p.grad.abs().max().item()
            meta["logits_max_abs"] = z.abs().max().item()
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], ADAMW["clip"])
        losses.append(loss.item())
        norms.append(norm.item())
        opt.step()
    with torch.no_grad():
        meta["final_loss"] = ce(model(input_ids=ids).logits, tgt).item()
    for n, p in params:
        tensors["final." + n] = p.detach().clone()
    ref = {"config": name, "loss": meta["loss"], "loss_f64": meta["loss_f64"],
           "adamw": ADAMW, "losses": losses, "grad_norms": norms,
           "final_loss": meta["final_loss"],
           "rope_theta": rope_theta, "tie_word_embeddings": tie,
           "seed": SEEDS[name], "batch_seed": BATCH_SEED,
           "n_targets": int((tgt != IGNORE).sum()),
           "logits_max_abs": meta["logits_max_abs"],
           "grad_max_abs": meta["grad_max_abs"],
           "torch": torch.__version__, "transformers": transformers.__version__}
    write_ref(d, tensors, ref)
    return ref


def mixed_loss(weak, strong, ids, tgt):
    zw = weak(input_ids=ids).logits
    zs = strong(input_ids=ids).logits
    z = LAMBDA * zs + (1.0 - LAMBDA) * zw
    return z, ce(z, tgt)


def mixed_fixture(root, ids, tgt):
    d = os.path.join(root, "mixed")
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    wdir, sdir = os.path.join(d, "weak"), os.path.join(d, "strong")
    weak = fresh_model("weak", 10000.0, False, SEEDS["weak"], wdir)
    strong = fresh_model("strong", 10000.0, False, SEEDS["strong"], sdir)
    tensors = {"input_ids": ids.float(), "targets": tgt.float()}
    meta = {}

    # first step's loss and gradients from the saved start
    z, loss = mixed_loss(weak, strong, ids, tgt)
    loss.backward()
    tensors["logits_mix"] = z.detach()
    meta["loss"] = loss.item()
    meta["grad_max_abs"] = {}
    for tag, m in (("weak", weak), ("strong", strong)):
        for n, p in m.named_parameters():
            tensors["grad.%s.%s" % (tag, n)] = p.grad.detach().clone()
            meta["grad_max_abs"]["%s.%s" % (tag, n)] = p.grad.abs().max().item()
    meta["logits_mix_max_abs"] = z.abs().max().item()

    def joint_steps(mode):
        """STEPS_MIXED AdamW steps of both models from the saved start.
        mode "joint": one clip over both models' gradients (the reference
        code's fused module under one optimizer, wdl-train's default);
        "separate": each model clipped on its own."""
        w, s_ = load_model(wdir), load_model(sdir)
        ow, os_ = make_opt(w), make_opt(s_)
        out = {"losses": [], "weak": [], "strong": [], "joint": []}
        for step in range(STEPS_MIXED):
            ow.zero_grad(set_to_none=True)
            os_.zero_grad(set_to_none=True)
            _, l = mixed_loss(w, s_, ids, tgt)
            l.backward()
            nw = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in w.parameters()])).item()
            ns = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in s_.parameters()])).item()
            if mode == "joint":
                nj = torch.nn.utils.clip_grad_norm_(list(w.parameters()) + list(s_.parameters()),
                                                    ADAMW["clip"]).item()
            else:
                torch.nn.utils.clip_grad_norm_(list(w.parameters()), ADAMW["clip"])
                torch.nn.utils.clip_grad_norm_(list(s_.parameters()), ADAMW["clip"])
                nj = (nw * nw + ns * ns) ** 0.5
            out["losses"].append(l.item())
            out["weak"].append(nw)
            out["strong"].append(ns)
            out["joint"].append(nj)
            ow.step()
            os_.step()
        for tag, m in (("weak", w), ("strong", s_)):
            for n, p in m.named_parameters():
                tensors["after_%s.%s.%s" % (mode, tag, n)] = p.detach().clone()
        return out

    joint = joint_steps("joint")
    separate = joint_steps("separate")
    losses = joint["losses"]
    gn_w, gn_s = joint["weak"], joint["strong"]

    # the same from the saved start, weak model frozen (never updated)
    weak, strong = load_model(wdir), load_model(sdir)
    weak.requires_grad_(False)
    os_ = make_opt(strong)
    flosses, fgn_s = [], []
    for step in range(STEPS_MIXED):
        os_.zero_grad(set_to_none=True)
        _, loss = mixed_loss(weak, strong, ids, tgt)
        loss.backward()
        fgn_s.append(torch.nn.utils.clip_grad_norm_(list(strong.parameters()), ADAMW["clip"]).item())
        flosses.append(loss.item())
        os_.step()

    ref = {"config": "mixed", "lambda": LAMBDA, "loss": meta["loss"],
           "mix_rule": "z_mix = lambda*z_strong + (1-lambda)*z_weak",
           "adamw": ADAMW, "losses": losses,
           "grad_norms": {"weak": gn_w, "strong": gn_s, "joint": joint["joint"]},
           "clip_rule": "losses/after_joint: one clip_grad_norm_ over both models' "
                        "gradients; separate_losses/after_separate: each model on its own",
           "separate_losses": separate["losses"],
           "separate_grad_norms": {"weak": separate["weak"], "strong": separate["strong"]},
           "frozen_weak_losses": flosses,
           "frozen_weak_grad_norms": {"strong": fgn_s},
           "seeds": {"weak": SEEDS["weak"], "strong": SEEDS["strong"]},
           "batch_seed": BATCH_SEED, "rope_theta": 10000.0,
           "n_targets": int((tgt != IGNORE).sum()),
           "logits_mix_max_abs": meta["logits_mix_max_abs"],
           "grad_max_abs": meta["grad_max_abs"],
           "torch": torch.__version__, "transformers": transformers.__version__}
    write_ref(d, tensors, ref)
    return ref


# ---- bf16 (wdl --precision bf16) -------------------------------------------
def bf16_round(x):
    return x.to(torch.bfloat16).to(torch.float32)


class Bf16MatMul(torch.autograd.Function):
    """wdl's --precision bf16 GEMM: both inputs rounded to bf16 (RNE),
    products accumulated and returned in float32. The backward products are
    GEMMs of the same kind: dA = r(dC) r(B)^T, dB = r(A)^T r(dC)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return torch.matmul(bf16_round(a), bf16_round(b))

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g = bf16_round(g)
        return (torch.matmul(g, bf16_round(b).transpose(-1, -2)),
                torch.matmul(bf16_round(a).transpose(-1, -2), g))


class Bf16Gemms(torch.overrides.TorchFunctionMode):
    """Every F.linear and torch.matmul of transformers' Qwen3 (the projections,
    q k^T, p v, lm_head) becomes a Bf16MatMul; everything else is float32."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            assert len(args) < 3 or args[2] is None, "no biases in Qwen3"
            return Bf16MatMul.apply(args[0], args[1].t())
        if func is torch.matmul:
            return Bf16MatMul.apply(*args)
        return func(*args, **kwargs)


def bf16_fixture(root, ids, tgt):
    """The untied model's first step (logits, NLL, entropy, loss, gradients)
    two ways: "emu", transformers with wdl's bf16 GEMM semantics exactly
    (Bf16Gemms), and "autocast", transformers under torch.autocast("cpu",
    bfloat16) (which also rounds every matmul's output to bf16). Gradients
    are stored in F16 to keep the file small (11-bit significand: 2^-12
    relative, far below the bf16 tolerances)."""
    from safetensors.torch import save_file
    d = os.path.join(root, "bf16")
    os.makedirs(d, exist_ok=True)
    tensors = {"input_ids": ids.float(), "targets": tgt.float()}
    meta = {"model": "untied", "n_targets": int((tgt != IGNORE).sum()),
            "torch": torch.__version__, "transformers": transformers.__version__}
    for tag in ("emu", "autocast"):
        model = load_model(os.path.join(root, "untied"))
        model.train()
        if tag == "emu":
            with Bf16Gemms():
                z = model(input_ids=ids).logits
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                z = model(input_ids=ids).logits
        loss = ce(z, tgt)
        loss.backward()
        z = z.detach().float()
        lp = torch.log_softmax(z.double(), dim=-1)
        tensors[tag + ".logits"] = z.contiguous()
        tensors[tag + ".entropy"] = (-(lp.exp() * lp).sum(-1)).float().contiguous()
        tensors[tag + ".nll"] = F.cross_entropy(z.reshape(-1, V), tgt.reshape(-1), ignore_index=IGNORE,
                                                reduction="none").reshape(B, T).contiguous()
        meta[tag] = {"loss": loss.item(), "logits_max_abs": z.abs().max().item(), "grad_max_abs": {}}
        if tag == "emu":
            for n, p in model.named_parameters():
                tensors["emu.grad." + n] = p.grad.detach().to(torch.float16).contiguous()
        for n, p in model.named_parameters():
            meta[tag]["grad_max_abs"][n] = p.grad.abs().max().item()
    save_file(tensors, os.path.join(d, "ref.safetensors"))
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return meta


M64 = (1 << 64) - 1


def mix64(z):
    """splitmix64's step and output function (lib/common.c's rng_mix64)."""
    z = (z + 0x9e3779b97f4a7c15) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def neftune_noise(hidden):
    """wdl's NEFTune noise for the fixture batch, written independently of
    the C code from its definition (lib/neftune.h): element (b, t, c) of a
    real position is u * alpha / sqrt(L_b * d) in float32, u = the top 24
    bits of mix64(h ^ c) times 2^-23 minus 1, h = mix64(mix64(mix64(seed) ^
    key_b) ^ t); padding gets none."""
    nf = NEFTUNE
    noise = torch.zeros(B, T, hidden, dtype=torch.float32)
    for b, (key, n) in enumerate(zip(nf["keys"], nf["lens"])):
        mag = torch.tensor(nf["alpha"] / (n * hidden) ** 0.5, dtype=torch.float64).float()
        for t in range(n):
            h = mix64(mix64(mix64(nf["seed"]) ^ key) ^ t)
            u = torch.tensor([mix64(h ^ c) >> 40 for c in range(hidden)], dtype=torch.float32)
            noise[b, t] = mag * (u * 2.0 ** -23 - 1.0)
    return noise


def neftune_fixture(root, ids, tgt):
    """The untied model's loss and gradients with NEFTune noise added to
    its input embeddings (inputs_embeds = embed_tokens(ids) + noise)."""
    d = os.path.join(root, "neftune")
    os.makedirs(d, exist_ok=True)
    model = load_model(os.path.join(root, "untied"))
    model.train()
    tg = tgt.clone()
    for b, n in enumerate(NEFTUNE["lens"]):
        tg[b, n:] = IGNORE
    noise = neftune_noise(model.config.hidden_size)
    z = model(inputs_embeds=model.model.embed_tokens(ids) + noise).logits
    loss = ce(z, tg)
    loss.backward()
    tensors = {"input_ids": ids.float(), "targets": tg.float(), "noise": noise, "logits": z.detach()}
    for n, p in model.named_parameters():
        tensors["grad." + n] = p.grad.detach().clone()
    lp = torch.log_softmax(z.detach().double(), dim=-1)
    nll64 = -lp.gather(-1, tg.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    meta = dict(NEFTUNE, model="untied", loss=loss.item(), loss_f64=nll64[tg != IGNORE].mean().item(),
                n_targets=int((tg != IGNORE).sum()), noise_max_abs=noise.abs().max().item(),
                torch=torch.__version__, transformers=transformers.__version__)
    write_ref(d, tensors, meta)
    return meta


def generate(root):
    os.makedirs(root, exist_ok=True)
    ids, tgt = make_batch()
    refs = [single_fixture(root, "untied", 10000.0, False, ids, tgt),
            single_fixture(root, "tied", 1000000.0, True, ids, tgt),
            mixed_fixture(root, ids, tgt)]
    b16 = bf16_fixture(root, ids, tgt)
    nft = neftune_fixture(root, ids, tgt)
    print(HF_FORWARD % transformers.__version__)
    print("torch %s, transformers %s" % (torch.__version__, transformers.__version__))
    for r in refs:
        print("%-7s loss %.6f  losses %s" % (
            r["config"], r["loss"], " ".join("%.4f" % x for x in r["losses"])))
    print("bf16    loss %.6f (emulated wdl GEMMs), %.6f (autocast)" % (b16["emu"]["loss"], b16["autocast"]["loss"]))
    print("neftune loss %.6f (alpha %g)" % (nft["loss"], nft["alpha"]))
    for sub in ("untied", "tied", "mixed", "mixed/weak", "mixed/strong", "bf16", "neftune"):
        d = os.path.join(root, sub)
        for f in sorted(os.listdir(d)):
            p = os.path.join(d, f)
            if os.path.isfile(p):
                print("%-28s %8d  %s" % (os.path.join(sub, f), os.path.getsize(p), sha256(p)))


def check_dir(path, ids_arg, out):
    ids = [int(x) for x in ids_arg.replace(" ", "").split(",") if x != ""]
    if not ids:
        sys.exit("gen_fixtures: --ids: no token ids")
    model = load_model(path)
    model.eval()
    vocab = model.config.vocab_size
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        sys.exit("gen_fixtures: --ids: %d out of range [0,%d)" % (bad[0], vocab))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    st = os.path.join(path, "model.safetensors")
    if not os.path.exists(st):                      # sharded checkpoint
        st = os.path.join(path, "model.safetensors.index.json")
    res = {"ids": ids, "logits": logits.tolist(),
           "transformers": transformers.__version__, "torch": torch.__version__,
           "sha256": sha256(st), "sha256_of": os.path.basename(st)}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f)
        f.write("\n")
    os.replace(tmp, out)
    print("gen_fixtures: %s: %d x %d logits -> %s" % (path, len(ids), vocab, out),
          file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="fixture root (default tests/fixtures) or, "
                    "with --check-dir, the JSON file to write")
    ap.add_argument("--check-dir", help="model directory to run")
    ap.add_argument("--ids", help="comma-separated token ids (with --check-dir)")
    a = ap.parse_args()
    setup_determinism()
    if a.check_dir:
        if not a.ids or not a.out:
            ap.error("--check-dir needs --ids and --out")
        check_dir(a.check_dir, a.ids, a.out)
    else:
        generate(a.out or os.path.join(HERE, "fixtures"))


if __name__ == "__main__":
    main()
