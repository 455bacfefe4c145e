"""PyTorch (cuBLAS through torch.matmul) on the shapes of vllm-kernels/benches/products.rs, in the
same device call: Y = X @ W^T, bf16, median of 9 CUDA-event-timed passes over >= 256 MiB of
distinct weights. Prints one row per (shape, m) and optionally writes JSON."""
import json
import sys

import torch

SHAPES = [("llama3-8b qkv", 6144, 4096), ("llama3-8b o", 4096, 4096),
          ("llama3-8b gate_up", 28672, 4096), ("llama3-8b down", 4096, 14336),
          ("qwen3-0.6b qkv", 4096, 1024), ("qwen3-0.6b o", 1024, 2048),
          ("qwen3-0.6b gate_up", 6144, 1024), ("qwen3-0.6b down", 1024, 3072)]
ROWS = [8, 16, 32, 64, 96, 128, 144, 160, 192, 224, 256]


def main():
    out = []
    for name, n, k in SHAPES:
        sets = max(2, -(-(256 << 20) // (n * k * 2)))
        ws = [torch.empty(n, k, dtype=torch.bfloat16, device="cuda").uniform_(-0.05, 0.05)
              for _ in range(sets)]
        x = torch.empty(max(ROWS), k, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
        for m in ROWS:
            xm = x[:m]
            for w in ws:
                torch.matmul(xm, w.t())
            ts = []
            for _ in range(9):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                for w in ws:
                    torch.matmul(xm, w.t())
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b) * 1e3 / sets)
            us = sorted(ts)[len(ts) // 2]
            print(f"torch {name:<20} {m:>4} {us:>10.1f} us")
            out.append({"shape": name, "m": m, "torch_us": us})
        del ws
    if len(sys.argv) > 2 and sys.argv[1] == "--json":
        json.dump({"device": torch.cuda.get_device_name(), "results": out}, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
