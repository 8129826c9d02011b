#!/usr/bin/env python3
"""Hugging Face `tokenizers` on the texts bench_tok uses (GSM8K test set:
every instruction, input and output, one thread), for comparison.
usage: tok_hf.py [tokenizer.json [test.json [seconds]]]
Shared data is found under $WDL_SHARED or ../shared. Prints a skip message
and exits 0 when the `tokenizers` package or the data is missing."""
import json
import os
import sys
import time

# one thread, as bench_tok (set before the import)
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def main():
    shared = os.environ.get("WDL_SHARED") or "../shared"
    tj = sys.argv[1] if len(sys.argv) > 1 else os.path.join(shared, "data/qwen3-tokenizer/tokenizer.json")
    gj = sys.argv[2] if len(sys.argv) > 2 else os.path.join(shared, "data/benchmarks/gsm8k/test.json")
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    try:
        import tokenizers
        from tokenizers import Tokenizer
    except ImportError:
        print("tokenizer(hf): skipped (python package `tokenizers` is not installed)")
        return
    if not (os.path.exists(tj) and os.path.exists(gj)):
        print(f"tokenizer(hf): skipped ({tj} or {gj} is absent)")
        return
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(tj)
    load = time.perf_counter() - t0
    texts = [r[f] for r in json.load(open(gj, encoding="utf-8"))
             for f in ("instruction", "input", "output") if r.get(f)]
    nbytes = sum(len(s.encode("utf-8")) for s in texts)
    ntok = sum(len(tok.encode(s).ids) for s in texts)

    def rate(run):
        passes, t0 = 0, time.perf_counter()
        while True:
            run()
            passes += 1
            el = time.perf_counter() - t0
            if passes >= 3 and el >= secs:
                return nbytes * passes / el / 1e6

    one = rate(lambda: [tok.encode(s) for s in texts])
    batch = rate(lambda: tok.encode_batch(texts))
    print(f"tokenizer(hf): qwen3 encode {one:.1f} MB/s one by one, {batch:.1f} MB/s as a batch "
          f"({len(texts)} texts, {nbytes} bytes, {ntok} tokens; load {load:.3f} s; tokenizers {tokenizers.__version__})")


if __name__ == "__main__":
    main()
