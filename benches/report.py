#!/usr/bin/env python3
"""Joins ours.json (benches/kernels.rs) and torch.json (benches/torch_kernels.py) into one table:
time, GB/s, % of the measured ceiling, PyTorch's time, speed-up. Prints it and writes Markdown.
Usage: report.py OURS TORCH MARKDOWN_OUT [--date YYYY-MM-DD]"""
import json
import sys


def main():
    ours_p, torch_p, md_p = sys.argv[1:4]
    date = sys.argv[sys.argv.index("--date") + 1] if "--date" in sys.argv else "unknown date"
    ours = json.load(open(ours_p))
    theirs = json.load(open(torch_p))
    tmap = {(r["kernel"], r["dtype"], r["tokens"], r["hidden"]): r["us"] for r in theirs["results"]}
    lines = [
        f"# Kernel microbenchmarks: {ours['device']}, {date}",
        "",
        f"Ceilings measured in the same run: device-to-device copy {ours['copy_gbps']:.0f} GB/s "
        f"(read + write), pinned host -> device {ours['pinned_h2d_gbps']:.1f} GB/s. "
        f"PyTorch {theirs.get('torch', '?')}. Method: {ours['method']}. "
        "'% of ceiling' is against the 1 GiB copy (or the pinned copy for swap_blocks); "
        "'% of same-size copy' against a device-to-device copy moving the same bytes as the kernel.",
        "",
        "| kernel | dtype | tokens x hidden | ours (us) | GB/s | % of ceiling | % of same-size copy | torch (us) | speed-up |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    fails = []
    prefill = [r for r in ours["results"] if "tflops" in r]
    for r in ours["results"]:
        if "tflops" in r:
            continue
        key = (r["kernel"], r["dtype"], r["tokens"], r["hidden"])
        t = tmap.get(key)
        sp = f"{t / r['us']:.2f}x" if t else "n/a"
        ts = f"{t:.2f}" if t else "n/a"
        same = f"{r['pct_of_same_size_copy']:.1f}" if r.get("pct_of_same_size_copy") else "n/a"
        lines.append(
            f"| {r['kernel']} | {r['dtype']} | {r['tokens']} x {r['hidden']} | {r['us']:.2f} | "
            f"{r['gbps']:.0f} | {r['pct_of_ceiling']:.1f} | {same} | {ts} | {sp} |"
        )
        large = r["tokens"] == 4096 and r["ceiling"] == "d2d_copy" and r["kernel"] != "copy_blocks"
        if large and (r["pct_of_ceiling"] < 80 or (t and t < r["us"])):
            fails.append(f"{r['kernel']} {r['dtype']} {r['tokens']}x{r['hidden']}: "
                         f"{r['pct_of_ceiling']:.1f}% of copy, ours {r['us']:.1f} us vs torch {ts} us")
    lines += ["", "Large shapes (4096 tokens) below 80% of copy bandwidth or slower than PyTorch:", ""]
    lines += [f"- {f}" for f in fails] or ["- none"]
    att = {(r["kernel"], r["tokens"], r["hidden"]): r for r in ours["results"] if r["kernel"].startswith("paged_attention")}
    if att:
        lines += ["", "Decode attention (rows: batch x context; GB/s counts K and V bytes read; torch: SDPA on "
                  "contiguous K/V, enable_gqa; for the fp8 rows GB/s counts the FP8 cache bytes and torch is the same bf16 SDPA). Targets: >= 85% of copy at 64x4096 and 256x4096, v2 >= 70% at 1x32768:", ""]
        for key, target in [(("paged_attention_v1", 64, 4096), 85), (("paged_attention_v1", 256, 4096), 85),
                            (("paged_attention_v2", 64, 4096), 85), (("paged_attention_v2", 256, 4096), 85),
                            (("paged_attention_v2", 1, 32768), 70),
                            (("paged_attention_fp8_v1", 64, 4096), 85), (("paged_attention_fp8_v1", 256, 4096), 85),
                            (("paged_attention_fp8_v2", 1, 32768), 70)]:
            r = att.get(key)
            if r:
                ok = "meets" if r["pct_of_ceiling"] >= target else "MISSES"
                lines.append(f"- {key[0]} {key[1]}x{key[2]}: {r['pct_of_ceiling']:.1f}% of copy ({ok} {target}%)")
    if prefill:
        pmap = {(r["kernel"], r["tokens"], r["hidden"], r.get("prefix", 0)): r for r in theirs["results"]}
        lines += ["", "Prefill attention (bf16, head 128, 32 / 8 heads, causal flops; torch: SDPA flash backend, "
                  "same run). Target: >= 1.0x SDPA flash; FlashAttention-3 publishes ~740 TFLOP/s on H100:", "",
                  "fp8 rows: our kernel over an FP8 E4M3 cache, torch the same bf16 SDPA.", "",
                  "| sequences x new tokens | cached prefix | cache | ours (us) | TFLOP/s | torch (us) | torch TFLOP/s | speed-up |",
                  "|---|---:|---|---:|---:|---:|---:|---:|"]
        for r in prefill:
            t = pmap.get((r["kernel"].replace("_fp8", ""), r["tokens"], r["hidden"], r["prefix"]))
            tus = t["us"] if t else None
            cache = "fp8" if "_fp8" in r["kernel"] else r["dtype"]
            lines.append(
                f"| {r['tokens']} x {r['hidden']} | {r['prefix']} | {cache} | {r['us']:.1f} | {r['tflops']:.0f} | "
                + (f"{tus:.1f} | {r['flops'] / tus / 1e6:.0f} | {tus / r['us']:.2f}x |" if tus else "n/a | n/a | n/a |"))
    text = "\n".join(lines) + "\n"
    open(md_p, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
