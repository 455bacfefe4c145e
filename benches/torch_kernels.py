#!/usr/bin/env python3
"""PyTorch's time for the same ops and shapes as vllm-kernels/benches/kernels.rs, on the same GPU,
timed the same way: CUDA events around batches of at least 64 calls after warm-up, rotating input sets that
cover >= 200 MB, median of the batches. Usage: torch_kernels.py [--json PATH] [--quick] [--only attention|prefill|runner]."""
import argparse
import json
import math

import torch
import torch.nn.functional as F

TOKENS = [1, 16, 256, 4096]
HIDDEN = 4096
ROTATE_BYTES = 200 << 20
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def sets_for(nbytes):
    return max(2, min(64, math.ceil(ROTATE_BYTES / max(1, nbytes))))


def time_us(sets, fn, repeats):
    for i in range(max(3, sets)):
        fn(i % sets)
    per_batch = max(64, sets)
    samples = []
    for _ in range(repeats):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        for i in range(per_batch):
            fn(i % sets)
        b.record()
        b.synchronize()
        samples.append(a.elapsed_time(b) * 1e3 / per_batch)
    samples.sort()
    return samples[len(samples) // 2]


def rnd(shape, dt, lo=-1.0, hi=1.0):
    return (torch.rand(shape, device="cuda", dtype=torch.float32) * (hi - lo) + lo).to(dt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["attention", "prefill", "runner"],
                    help="run the attention (or prefill, or model-runner op) rows alone")
    args = ap.parse_args()
    repeats = 5 if args.quick else 25
    out = []

    def rec(kernel, dtype, tokens, hidden, us):
        print(f"torch {kernel:<20} {dtype:<5} {tokens:>5} x {hidden:<6} {us:>10.2} us")
        out.append(dict(kernel=kernel, dtype=dtype, tokens=tokens, hidden=hidden, us=us))

    # Decode attention: SDPA on gathered, contiguous K/V (the gather itself is not timed).
    nh, nkv, hs = 32, 8, 128
    decode = [] if args.only in ("prefill", "runner") else [(1, 4096), (1, 32768), (8, 4096), (64, 4096), (256, 1024), (256, 4096)]
    for batch, ctx in decode:
        kv_bytes = 2 * batch * ctx * nkv * hs * 2
        sets = sets_for(kv_bytes)
        ks = [torch.randn(batch, nkv, ctx, hs, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
        vs = [torch.randn(batch, nkv, ctx, hs, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
        q = torch.randn(batch, nh, 1, hs, device="cuda", dtype=torch.bfloat16)

        def sdpa(i):
            F.scaled_dot_product_attention(q, ks[i], vs[i], enable_gqa=True)

        us = time_us(sets, sdpa, repeats)
        # PyTorch has no FP8 attention: the FP8-cache rows are compared with the same bf16 SDPA.
        for name in ("paged_attention_v1", "paged_attention_v2", "paged_attention_fp8_v1", "paged_attention_fp8_v2"):
            rec(name, "bf16", batch, ctx, us)
        del ks, vs
        torch.cuda.empty_cache()

    # Prefill: SDPA with the flash backend, causal (lower-right aligned when a cached prefix makes
    # the keys outnumber the queries), GQA through enable_gqa (or K/V repeated per query head if
    # this build's flash backend refuses it; the repeat is not timed).
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right
    prefills = [] if args.only == "runner" else [(1, 4096, 0), (16, 512, 0), (1, 4096, 4096), (16, 512, 512)]
    for seqs, q_len, prefix in prefills:
        kv_len = prefix + q_len
        q = torch.randn(seqs, nh, q_len, hs, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(seqs, nkv, kv_len, hs, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(seqs, nkv, kv_len, hs, device="cuda", dtype=torch.bfloat16)
        mask = causal_lower_right(q_len, kv_len) if prefix else None
        how = "enable_gqa"

        def run(_, k=k, v=v, gqa=True):
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                if mask is None:
                    F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
                else:
                    F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)

        try:
            run(0)
            fn = run
        except RuntimeError:
            how = "repeated K/V"
            kr, vr = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
            fn = lambda i: run(i, kr, vr, False)  # noqa: E731
        us = time_us(2, fn, repeats)
        name = "prefill_attention_prefix" if prefix else "prefill_attention"
        print(f"torch {name} {seqs} x {q_len} prefix {prefix}: {us:.1f} us (flash, {how})")
        out.append(dict(kernel=name, dtype="bf16", tokens=seqs, hidden=q_len, prefix=prefix, us=us, how=how))

    if args.only in (None, "runner"):
        runner_ops(rec, repeats)
    for name, dt in ([] if args.only else DTYPES.items()):
        e = torch.finfo(dt).bits // 8
        # Norms.
        for h in (HIDDEN, 2 * HIDDEN):
            for t in TOKENS:
                sets = sets_for(2 * t * h * e)
                xs = [rnd((t, h), dt, -2, 2) for _ in range(sets)]
                rs = [rnd((t, h), dt, -2, 2) for _ in range(sets)]
                w = rnd((h,), dt, 0.5, 1.5)
                rec("rms_norm", name, t, h, time_us(sets, lambda i: F.rms_norm(xs[i], (h,), w, 1e-6), repeats))

                def fused(i):
                    rs[i].add_(xs[i])
                    xs[i].copy_(F.rms_norm(rs[i], (h,), w, 1e-6))

                rec("fused_add_rms_norm", name, t, h, time_us(sets, fused, repeats))
        # Rotary (Llama-3-8B heads), written with torch ops, in place like ours.
        nh, nkv, hs, maxp = 32, 8, 128, 8192
        cache = rnd((maxp, hs), dt)
        for t in TOKENS:
            sets = sets_for(2 * t * (nh + nkv) * hs * e)
            pos = torch.randint(0, maxp, (t,), device="cuda")
            qs = [rnd((t, nh, hs), dt) for _ in range(sets)]
            ks = [rnd((t, nkv, hs), dt) for _ in range(sets)]

            def rope(i, neox):
                cos, sin = cache[pos].chunk(2, dim=-1)
                cos, sin = cos[:, None, :], sin[:, None, :]
                for x in (qs[i], ks[i]):
                    if neox:
                        x1, x2 = x[..., : hs // 2], x[..., hs // 2:]
                        x.copy_(torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1))
                    else:
                        x1, x2 = x[..., 0::2], x[..., 1::2]
                        x.copy_(torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2))

            rec("rotary_neox", name, t, nh * hs, time_us(sets, lambda i: rope(i, True), repeats))
            rec("rotary_gptj", name, t, nh * hs, time_us(sets, lambda i: rope(i, False), repeats))
        # Gated activations.
        d = HIDDEN
        for t in TOKENS:
            sets = sets_for(3 * t * d * e)
            xs = [rnd((t, 2 * d), dt, -4, 4) for _ in range(sets)]
            acts = {
                "silu_and_mul": lambda x: F.silu(x[:, :d]) * x[:, d:],
                "gelu_and_mul": lambda x: F.gelu(x[:, :d]) * x[:, d:],
                "gelu_tanh_and_mul": lambda x: F.gelu(x[:, :d], approximate="tanh") * x[:, d:],
            }
            for k, f in acts.items():
                rec(k, name, t, d, time_us(sets, lambda i: f(xs[i]), repeats))
        # Cache ops, in our HND layout [blocks, kv heads, block size, head size].
        nkv, hs, bs = 32, 128, 16
        for t in TOKENS:
            nb = math.ceil(t / bs)
            sets = sets_for(4 * t * nkv * hs * e)
            slots = torch.randperm(nb * bs, device="cuda")[:t]
            blk, off = slots // bs, slots % bs
            ks = [rnd((t, nkv, hs), dt) for _ in range(sets)]
            vs = [rnd((t, nkv, hs), dt) for _ in range(sets)]
            kcs = [torch.zeros((nb, nkv, bs, hs), device="cuda", dtype=dt) for _ in range(sets)]
            vcs = [torch.zeros((nb, nkv, bs, hs), device="cuda", dtype=dt) for _ in range(sets)]

            def scatter(i):
                kcs[i][blk, :, off, :] = ks[i]
                vcs[i][blk, :, off, :] = vs[i]

            rec("reshape_and_cache", name, t, nkv * hs, time_us(sets, scatter, repeats))
            if name != "bf16":
                continue
            src = torch.arange(nb, device="cuda")
            dst = src + nb
            sets = sets_for(4 * nb * nkv * bs * hs * e)
            kv = [rnd((2 * nb, nkv, bs, hs), dt) for _ in range(2 * sets)]

            def copy(i):
                for c in (kv[2 * i], kv[2 * i + 1]):
                    c[dst] = c[src]

            rec("copy_blocks", name, t, nkv * hs, time_us(sets, copy, repeats))
            dev = rnd((nb, nkv, bs, hs), dt)
            host = torch.empty((nb, nkv, bs, hs), dtype=dt, pin_memory=True)

            def swap(_):
                for b in range(nb):
                    host[b].copy_(dev[b], non_blocking=True)

            rec("swap_blocks_d2h", name, t, nkv * hs, time_us(1, swap, repeats))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, results=out), f, indent=1)


def runner_ops(rec, repeats):
    """The model-runner ops of kernels.rs runner_ops, written with torch ops."""
    # Sampling as vLLM's sampler does it: softmax(logits / T), min-p masking, then
    # argmax(probs / Exp(1) noise); greedy is argmax.
    for rows, vocab in [(256, 151936), (1, 128256)]:
        sets = sets_for(rows * vocab * 4)
        logits = [rnd((rows, vocab), torch.float32, -12, 4) for _ in range(sets)]

        def greedy(i):
            logits[i].argmax(-1)

        def sample(i, min_p):
            probs = torch.softmax(logits[i] / 1.0, -1)
            if min_p > 0:
                probs = probs.masked_fill(probs < min_p * probs.amax(-1, keepdim=True), 0.0)
            (probs / torch.empty_like(probs).exponential_()).argmax(-1)

        def sample_filtered(i, k, p):
            # vLLM's PyTorch top-k / top-p (apply_top_k_top_p): sort, mask, scatter back.
            x = logits[i] / 1.0
            xs, order = x.sort(-1, descending=False)
            if k > 0:
                xs = xs.masked_fill(xs < xs[:, -k].unsqueeze(-1), float("-inf"))
            if p < 1:
                cum = xs.softmax(-1).cumsum(-1)
                mask = cum <= 1 - p
                mask[:, -1] = False
                xs = xs.masked_fill(mask, float("-inf"))
            x = xs.scatter(-1, order, xs)
            probs = torch.softmax(x, -1)
            (probs / torch.empty_like(probs).exponential_()).argmax(-1)

        rec("sample_greedy", "f32", rows, vocab, time_us(sets, greedy, repeats))
        rec("sample_t1", "f32", rows, vocab, time_us(sets, lambda i: sample(i, 0.0), repeats))
        rec("sample_t1_minp0.05", "f32", rows, vocab, time_us(sets, lambda i: sample(i, 0.05), repeats))
        rec("sample_t1_topk50", "f32", rows, vocab, time_us(sets, lambda i: sample_filtered(i, 50, 1.0), repeats))
        rec("sample_t1_topp0.9", "f32", rows, vocab, time_us(sets, lambda i: sample_filtered(i, 0, 0.9), repeats))
        rec("sample_t1_topk50_topp0.9", "f32", rows, vocab,
            time_us(sets, lambda i: sample_filtered(i, 50, 0.9), repeats))
        del logits
        torch.cuda.empty_cache()
    rows, length, table_rows = 256, 4096, 32000
    table = torch.zeros((table_rows, length), device="cuda", dtype=torch.bfloat16)
    sets = sets_for(2 * rows * length * 2)
    ids = [torch.randint(0, table_rows, (rows,), device="cuda", dtype=torch.int32) for _ in range(sets)]
    rec("gather_rows", "bf16", rows, length,
        time_us(sets, lambda i: torch.index_select(table, 0, ids[i]), repeats))
    del table
    for t in (256, 4096):
        qkv = 3584 + 2 * 512
        sets = sets_for(2 * t * qkv * 2)
        xs = [rnd((t, qkv), torch.bfloat16, -2, 2) for _ in range(sets)]
        bias = rnd((qkv,), torch.bfloat16)
        rec("add_bias", "bf16", t, qkv, time_us(sets, lambda i: xs[i].add_(bias), repeats))
        nq, nkv, hs = 32, 8, 128
        sets = sets_for(2 * t * (nq + nkv) * hs * 2)
        xs = [rnd((t, nq + 2 * nkv, hs), torch.bfloat16, -2, 2) for _ in range(sets)]
        w = rnd((hs,), torch.bfloat16, 0.5, 1.5)

        def head_norm(i):
            qk = xs[i][:, : nq + nkv]
            qk.copy_(F.rms_norm(qk, (hs,), w, 1e-6))

        rec("head_rms_norm", "bf16", t, (nq + nkv) * hs, time_us(sets, head_norm, repeats))


if __name__ == "__main__":
    main()
