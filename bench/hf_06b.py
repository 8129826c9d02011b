#!/usr/bin/env python3
"""transformers' side of bench/score_06b.sh: Qwen3ForCausalLM loaded from a
wdl model directory (its config.json and model.safetensors), on token ids
given one JSON list per line (what wdl-score / wdl-eval feed the model).

  hf_06b.py score DIR IDS.jsonl --dtype fp32|bf16 --threads N
      teacher-forced forward of each sequence (no grad, one at a time)
  hf_06b.py generate DIR IDS.jsonl --dtype fp32|bf16 --threads N --max-new K
      greedy model.generate of K new tokens, all prompts in one batch
      (left padding), no early stop

Prints one JSON line: load seconds, compute seconds, tokens, tokens/s
(compute only and including the load), peak RSS of the process.
"""
import argparse
import json
import resource
import time

import torch
from transformers import Qwen3ForCausalLM
import transformers


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("score", "generate"))
    ap.add_argument("dir")
    ap.add_argument("ids")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-new", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    dt = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    seqs = [json.loads(line) for line in open(a.ids) if line.strip()]
    t0 = time.perf_counter()
    try:    # transformers >= 4.56 calls it dtype, older ones torch_dtype
        model = Qwen3ForCausalLM.from_pretrained(a.dir, dtype=dt, attn_implementation="sdpa")
    except TypeError:
        model = Qwen3ForCausalLM.from_pretrained(a.dir, torch_dtype=dt, attn_implementation="sdpa")
    model.eval()
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        if a.what == "score":
            for s in seqs:
                model(input_ids=torch.tensor([s])).logits
            tokens = sum(len(s) for s in seqs)
        else:
            n = max(len(s) for s in seqs)
            ids = torch.tensor([[0] * (n - len(s)) + s for s in seqs])
            mask = torch.tensor([[0] * (n - len(s)) + [1] * len(s) for s in seqs])
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=a.max_new,
                                 min_new_tokens=a.max_new, do_sample=False, pad_token_id=0)
            tokens = (out.shape[1] - n) * len(seqs)
    comp = time.perf_counter() - t0
    print(json.dumps({"impl": "transformers", "transformers": transformers.__version__, "torch": torch.__version__,
                      "bench": a.what, "dtype": a.dtype, "threads": a.threads, "sequences": len(seqs),
                      "tokens": tokens, "load_s": round(load, 2), "compute_s": round(comp, 2),
                      "tokens_per_s": round(tokens / comp, 2), "tokens_per_s_with_load": round(tokens / (load + comp), 2),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
