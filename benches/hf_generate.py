#!/usr/bin/env python3
"""HuggingFace transformers `generate()` on the same workloads as `vllm bench latency` and
`vllm bench throughput`, on the same GPU, so the ratio is measured in the same run.

The model is built from a config.json with random bf16 weights directly on the GPU (the
timings do not depend on the values; `ignore_eos` is emulated with `min_new_tokens`).

latency:    batch B, input L tokens, output O tokens, greedy, static KV cache (as transformers
            recommends for latency); time per output token = (end to end - time to first token)
            / (O - 1), median of N runs after a warm-up.
throughput: nano-vllm's shape (random input / output lengths in [lo, hi]). transformers has no
            continuous batching: sequences are sorted by length and run in batches of
            --batch, each padded (left) to its longest prompt and generating its largest output;
            output tokens/s counts only the tokens each request asked for, over the wall time
            of all batches (dynamic cache: a static one would be sized for the longest batch).

Prints one JSON line per measurement (and a readable line) for benches/report tables.
"""

import argparse
import json
import random
import statistics
import sys
import time

import torch
import transformers


def build(config_path, dtype):
    with open(f"{config_path}/config.json") as f:
        raw = json.load(f)
    # The bench configs name the architecture only; transformers wants model_type too.
    kinds = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
             "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
    raw.setdefault("model_type", kinds[raw["architectures"][0]])
    config = transformers.AutoConfig.for_model(**raw)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=dtype)
    model.eval()
    # Random-uniform weights at the usual init scale (from_config already initialised them).
    return model, config


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def latency(model, config, batch, input_len, output_len, iters):
    vocab = config.vocab_size
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, vocab, (batch, input_len), device="cuda", generator=gen)
    mask = torch.ones_like(ids)
    kw = dict(do_sample=False, cache_implementation="static", pad_token_id=0)

    def run(n):
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, **kw
            )
        assert out.shape[1] == input_len + n

    run(output_len)  # warm-up (compiles nothing; fills caches and cuBLAS heuristics)
    ttft = statistics.median(timed(lambda: run(1)) for _ in range(iters))
    total = statistics.median(timed(lambda: run(output_len)) for _ in range(iters))
    tpot = (total - ttft) / (output_len - 1)
    r = dict(
        bench="latency", engine="transformers", version=transformers.__version__,
        batch=batch, input_len=input_len, output_len=output_len,
        ttft_ms=ttft * 1e3, tpot_ms=tpot * 1e3, e2e_s=total,
    )
    print(json.dumps(r))
    print(f"transformers latency: batch {batch}, {input_len} in / {output_len} out: "
          f"TTFT {ttft*1e3:.1f} ms, time per output token {tpot*1e3:.2f} ms, end to end {total:.2f} s",
          file=sys.stderr)


def throughput(model, config, num_seqs, lo_in, hi_in, lo_out, hi_out, batch, seed, limit_s):
    rng = random.Random(seed)
    vocab = config.vocab_size
    reqs = [(rng.randint(lo_in, hi_in), rng.randint(lo_out, hi_out)) for _ in range(num_seqs)]
    reqs.sort(key=lambda r: r[0] + r[1])
    done_seqs, done_out, wall = 0, 0, 0.0
    for i in range(0, len(reqs), batch):
        part = reqs[i:i + batch]
        lp = max(r[0] for r in part)
        lo = max(r[1] for r in part)
        ids = torch.randint(1, vocab, (len(part), lp), device="cuda")
        mask = torch.zeros_like(ids)
        for j, (n_in, _) in enumerate(part):
            mask[j, lp - n_in:] = 1  # left padding
        with torch.inference_mode():
            wall += timed(lambda: model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=lo, min_new_tokens=lo,
                do_sample=True, temperature=0.6, top_k=0, pad_token_id=0))
        done_seqs += len(part)
        done_out += sum(r[1] for r in part)
        print(f"  batch {i // batch}: {len(part)} sequences, prompt {lp}, output {lo}, "
              f"{wall:.1f} s so far", file=sys.stderr)
        if wall > limit_s:
            break
    r = dict(
        bench="throughput", engine="transformers", version=transformers.__version__,
        num_seqs=num_seqs, measured_seqs=done_seqs, batch=batch,
        output_tokens=done_out, seconds=wall, requests_per_s=done_seqs / wall,
        output_tokens_per_s=done_out / wall,
    )
    print(json.dumps(r))
    print(f"transformers throughput: {done_seqs}/{num_seqs} requests (batches of {batch}) in "
          f"{wall:.1f} s: {done_seqs / wall:.2f} req/s, {done_out / wall:.1f} output tok/s",
          file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench", choices=["latency", "throughput"])
    p.add_argument("--config", required=True, help="folder with config.json")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--num-seqs", type=int, default=256)
    p.add_argument("--min-len", type=int, default=100)
    p.add_argument("--max-len", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-s", type=float, default=1e9,
                   help="stop after the batch that passes this many seconds (reports the measured part)")
    a = p.parse_args()
    torch.manual_seed(0)
    model, config = build(a.config, torch.bfloat16)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name()}", file=sys.stderr)
    if a.bench == "latency":
        latency(model, config, a.batch, a.input_len, a.output_len, a.iters)
    else:
        throughput(model, config, a.num_seqs, a.min_len, a.max_len, a.min_len, a.max_len,
                   a.batch, a.seed, a.limit_s)


if __name__ == "__main__":
    main()
