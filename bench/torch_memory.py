"""Peak memory of TorchModel brackets of a ~10M-parameter model (issue 17): bounded, not
growing with the number of pairs.

A float32 MLP 784-3000-2500-10 (9.9M parameters; one vector of P entries is 40 MB) and
``lie.tensor_rms`` over 3, 6 and all 15 pairs of the same 6 examples, each in a fresh child
process; the child's peak resident memory (``ru_maxrss``) and time. The whole (pairs, P)
array would take 113, 226 and 565 MiB: the reduction is computed chunk by chunk
(``fastperm.knobs.TORCH_CHUNK_BYTES``), so the peak should stay flat. (The gradients of the
examples, B × P, are held once: 226 MiB here.)

::

    python bench/torch_memory.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    from fastperm import lie, models
    torch.manual_seed(0)
    torch.set_num_threads(2)
    net = torch.nn.Sequential(torch.nn.Linear(784, 3000), torch.nn.Tanh(),
                              torch.nn.Linear(3000, 2500), torch.nn.Tanh(),
                              torch.nn.Linear(2500, 10))
    model = models.TorchModel(net, torch.nn.functional.binary_cross_entropy_with_logits)
    X, Y = torch.randn(6, 784), (torch.rand(6, 10) > 0.5).float()
    pairs = [(a, b) for a in range(6) for b in range(a + 1, 6)][: int(sys.argv[1])]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    rms = lie.tensor_rms(model, None, X, Y, pairs=pairs)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"P": model.P, "pairs": int(rms.pairs.shape[0]), "before": before,
                      "peak": peak, "seconds": seconds}))
    """
)


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    for npairs in (3, 6, 15):
        out = subprocess.run([sys.executable, "-c", CHILD, str(npairs)], check=True,
                             capture_output=True, text=True)  # fmt: skip
        got = json.loads(out.stdout.strip().splitlines()[-1])
        full = got["pairs"] * got["P"] * 4
        print(
            f"P = {got['P']:,}, {got['pairs']:2d} pairs: peak RSS {got['peak'] / 2**20:5.0f} MiB "
            f"(after the model was built {got['before'] / 2**20:5.0f} MiB; the full array "
            f"would be {full / 2**20:4.0f} MiB), {got['seconds']:.1f} s"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
