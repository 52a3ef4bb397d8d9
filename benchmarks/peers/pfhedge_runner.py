"""pfhedge's standard example, timed; run with the peers' venv, prints ONE JSON line.

    benchmarks/peers/.venv/bin/python benchmarks/peers/pfhedge_runner.py [--paths N]
        [--price-paths 10000,100000] [--repeats R]

Imports only torch and pfhedge (never jaxhedge): it runs in its own interpreter so the
two libraries never share a process or a BLAS thread pool. Work per epoch, as in
``Hedger.fit``: a train step (simulate ``--paths`` paths, hedge, entropic loss,
backward, Adam step) plus a validation pass (the same loss on fresh paths, no gradient);
a price pass is ``Hedger.price`` on ``--price-paths`` paths. Best of ``--repeats`` after
one warm-up (LazyLinear materialised, allocator warm).
"""
from __future__ import annotations

import argparse
import json
import os
import time


def _best(fn, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", type=int, default=10_000)
    p.add_argument("--price-paths", default="10000,100000")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    import pfhedge
    import torch
    from pfhedge.instruments import BrownianStock, EuropeanOption
    from pfhedge.nn import Hedger, MultiLayerPerceptron

    torch.manual_seed(0)
    derivative = EuropeanOption(BrownianStock(cost=1e-4))
    model = MultiLayerPerceptron()
    hedger = Hedger(model, inputs=["log_moneyness", "expiry_time", "volatility",
                                   "prev_hedge"])
    hedger.compute_loss(derivative, n_paths=1)  # materialise LazyLinear before Adam
    optimizer = torch.optim.Adam(hedger.parameters(), lr=1e-3)

    def train_step():
        hedger.train()
        optimizer.zero_grad()
        loss = hedger.compute_loss(derivative, n_paths=args.paths)
        loss.backward()
        optimizer.step()

    def validation():
        hedger.eval()
        hedger.compute_loss(derivative, n_paths=args.paths, enable_grad=False).item()

    out = {"library": "pfhedge", "pfhedge": pfhedge.__version__, "torch": torch.__version__,
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "n_paths": args.paths, "n_steps": int(derivative.underlier.spot.size(-1)) - 1,
           "n_weights": sum(p.numel() for p in hedger.parameters() if p.dim() == 2)}
    out["train_step_s"] = _best(train_step, args.repeats)
    out["validation_s"] = _best(validation, args.repeats)
    out["epoch_s"] = out["train_step_s"] + out["validation_s"]
    out["price_s"], out["price"] = {}, {}
    for n in (int(x) for x in args.price_paths.split(",") if x):
        out["price_s"][str(n)] = _best(lambda n=n: hedger.price(derivative, n_paths=n),
                                       args.repeats)
        out["price"][str(n)] = float(hedger.price(derivative, n_paths=n))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
