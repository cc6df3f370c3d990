#!/usr/bin/env python
"""torch.compile on Vision Big Bird: graph breaks (`torch._dynamo.explain`, eval forward and training forward with
labels) and what happens when the input size changes (compile time per call, number of compiled graphs, largest
|compiled - eager| logit difference). Prints a markdown table; docs/benchmarks.md quotes a run.

    python scripts/compile_check.py                           # tiny preset, sizes 224 256 288 200 384 320
    python scripts/compile_check.py --sizes 224 256 --threads 1
"""

import argparse
import time

import torch
from torch._dynamo.utils import counters

from vision_bigbird_hf import VisionBigBirdConfig, VisionBigBirdForImageClassification


def explain(model: torch.nn.Module, **inputs) -> tuple[int, int, list[str]]:
    """(graph count, graph-break count, break reasons) of one call of `model` under dynamo."""
    torch._dynamo.reset()
    result = torch._dynamo.explain(model)(**inputs)
    return result.graph_count, result.graph_break_count, [str(reason.reason) for reason in result.break_reasons]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small", "base"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 256, 288, 200, 384, 320])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = VisionBigBirdForImageClassification(VisionBigBirdConfig.from_preset(args.preset, num_labels=10))
    pixel_values = torch.randn(2, 3, 224, 224)

    print(f"torch {torch.__version__}, {args.threads} thread(s), preset {args.preset}\n")
    print("| call | graphs | graph breaks | reasons |\n|---|---:|---:|---|")
    with torch.no_grad():
        graphs, breaks, reasons = explain(model.eval(), pixel_values=pixel_values)
    print(f"| eval forward, 224 | {graphs} | {breaks} | {'; '.join(reasons) or '-'} |")
    graphs, breaks, reasons = explain(model.train(), pixel_values=pixel_values, labels=torch.tensor([1, 0]))
    print(f"| training forward with labels, 224 | {graphs} | {breaks} | {'; '.join(reasons) or '-'} |")

    torch._dynamo.reset()
    counters.clear()
    model.eval()
    compiled = torch.compile(model)
    print("\n| call | input | seconds (compile + run) | graphs compiled so far | max abs logit diff vs eager |")
    print("|---:|---|---:|---:|---:|")
    for call, size in enumerate(args.sizes, start=1):
        pixel_values = torch.randn(1, 3, size, size)
        start = time.perf_counter()
        with torch.no_grad():
            logits = compiled(pixel_values=pixel_values).logits
        seconds = time.perf_counter() - start
        with torch.no_grad():
            difference = (logits - model(pixel_values=pixel_values).logits).abs().max().item()
        print(f"| {call} | {size}x{size} | {seconds:.1f} | {counters['stats']['unique_graphs']} | {difference:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
