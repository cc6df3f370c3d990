#!/usr/bin/env python
"""Batch-1 latency of the dynamic-shape `torch.export` program against eager (tiny preset, 1 thread): the cost of the
branch-free paths taken when sizes are symbolic (padded + masked RS-Win windows, fixed-grid pooling). Median of 5
interleaved calls after one warm-up each; docs/benchmarks.md quotes a run.

    python scripts/export_speed.py
"""

import time

import torch
from torch.export import Dim, export

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = VisionBigBirdForImageClassification(VisionBigBirdConfig(num_labels=1000)).eval()
    shapes = {
        "pixel_values": {
            0: Dim("batch", min=1, max=64), 2: Dim("height", min=33, max=1024), 3: Dim("width", min=33, max=1024)
        }
    }
    exported = export(model, (), {"pixel_values": torch.randn(2, 3, 224, 224)}, dynamic_shapes=shapes).module()
    print("| input | eager (ms) | exported, dynamic shapes (ms) | exported / eager |\n|---|---:|---:|---:|")
    for size in (224, 512):
        pixel_values = torch.randn(1, 3, size, size)
        times = {"eager": [], "exported": []}
        with torch.inference_mode():
            for function in (model, exported):
                function(pixel_values=pixel_values)
            for _ in range(5):
                for name, function in (("eager", model), ("exported", exported)):
                    start = time.perf_counter()
                    function(pixel_values=pixel_values)
                    times[name].append(time.perf_counter() - start)
        median = {name: sorted(values)[len(values) // 2] * 1000 for name, values in times.items()}
        print(f"| {size}x{size} | {median['eager']:.0f} | {median['exported']:.0f} | "
              f"{median['exported'] / median['eager']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
