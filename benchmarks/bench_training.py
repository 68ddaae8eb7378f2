"""Training throughput: Keras on torch and on jax against a hand-written PyTorch loop.

Each case (architecture × readings per prefix) trains the same network three ways with
one CPU thread (as the issue measured): ``model.fit`` on the torch backend, ``model.fit``
on the jax backend, and an equivalent plain PyTorch module with ``torch.optim.AdamW`` and
``clip_grad_norm_``. Same batch, same global clip norm, same loss. One process per
backend runs its Keras passes *interleaved* with PyTorch passes, so a busy shared machine
slows both alike; each pass covers ``--batches`` batches, after an untimed warm-up (jax
compiles there), and the best of ``--repeats`` passes counts. Throughput is samples per
CPU-second of the process (``time.process_time``), which other users of the machine
disturb far less than wall time; on an idle machine the two agree.

    python benchmarks/bench_training.py                 # all four cases, ~5 minutes
    python benchmarks/bench_training.py --cases compact:100 recipe:100

The PyTorch model is written the way one would by hand (no NaN-padding mask); the Keras
model carries the mask logic, so the ratio includes that cost.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
DEFAULT_CASES = ["compact:100", "compact:1000", "recipe:100", "recipe:1000"]


def batches_for(architecture, steps, args):
    """(batch size, timed batches): the recipe at 1000 readings takes ~30 s per 256."""
    if architecture == "recipe" and steps >= 1000:
        return 64, max(1, args.batches // 4)
    if architecture == "recipe":
        return args.batch_size, max(1, args.batches // 2)
    return args.batch_size, args.batches


def make_data(n, steps, seed=0):
    rng = np.random.default_rng(seed)
    t = np.tile(np.linspace(0, 30, steps, dtype=np.float32), (n, 1))
    known = rng.normal(size=(n, 5)).astype(np.float32)
    pH = (known[:, 4:5] + 0.01 * rng.normal(size=(n, steps))).astype(np.float32)
    return {"pH": pH, "t": t, "known": known}, rng.normal(size=(n, 2)).astype(np.float32)


def interleaved_rates(passes, n_samples, repeats):
    """Samples per CPU-second of each named pass, best of ``repeats`` alternating runs."""
    for run_pass in passes.values():
        run_pass()  # warm-up: first-call overhead, jax compilation
    best = dict.fromkeys(passes, float("inf"))
    for _ in range(repeats):
        for name, run_pass in passes.items():
            start = time.process_time()
            run_pass()
            best[name] = min(best[name], time.process_time() - start)
    return {name: n_samples / seconds for name, seconds in best.items()}


# --- Keras ---------------------------------------------------------------------------------

def keras_pass(architecture, steps, batch, n_batches):
    import ei_keras  # noqa: F401
    import keras
    from ei_keras.losses import RegularizedGaussianNLL
    from ei_keras.models import architecture_kwargs, build_model
    from ei_keras.optimizers import AdamW

    model = build_model(**architecture_kwargs(architecture, steps))
    model.compile(AdamW(1e-3, weight_decay=1e-5, global_clipnorm=5.0),
                  loss={"posterior": RegularizedGaussianNLL()}, jit_compile="auto")
    x, y = make_data(batch * n_batches, steps)

    def run_pass():
        model.fit(x, {"posterior": y}, batch_size=batch, epochs=1, shuffle=False, verbose=0)

    return run_pass, {"params": model.count_params(), "backend": keras.backend.backend(),
                      "jit_compile": bool(model.jit_compile)}


# --- hand-written PyTorch ------------------------------------------------------------------

def pytorch_pass(architecture, steps, batch, n_batches):
    import torch
    from torch import nn
    from torch.nn import functional as F

    from ei_keras.models import architecture_kwargs

    spec = architecture_kwargs(architecture, steps)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    class Block(nn.Module):
        def __init__(self, cin, cout, kernel, dilation, pool, dropout):
            super().__init__()
            self.pool, self.pad = pool, (kernel - 1) * dilation
            self.conv1 = nn.Conv1d(cin, cout, kernel, dilation=dilation)
            self.conv2 = nn.Conv1d(cout, cout, kernel, dilation=dilation)
            self.residual = nn.Conv1d(cin, cout, 1) if cin != cout else None
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            if self.pool > 1:
                x = F.avg_pool1d(x, self.pool, ceil_mode=True)
            h = self.dropout(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
            h = self.dropout(F.relu(self.conv2(F.pad(h, (self.pad, 0)))))
            return F.relu(h + (x if self.residual is None else self.residual(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            widths = (3,) + tuple(spec["filters"])
            self.input_pool = spec["input_pool"]
            self.blocks = nn.ModuleList(
                Block(widths[i], widths[i + 1], spec["kernel_size"], spec["dilations"][i],
                      spec["pool_sizes"][i], spec["dropout"]) for i in range(len(widths) - 1))
            channels = widths[-1]
            self.score = nn.Sequential(nn.Conv1d(channels, max(1, channels // 2), 1), nn.ReLU(),
                                       nn.Conv1d(max(1, channels // 2), 1, 1))
            self.early_bias = nn.Parameter(torch.tensor(1.0))
            known_layers, width = [], 5
            for units in spec["known_units"]:
                known_layers += [nn.Linear(width, units), nn.ReLU()]
                width = units
            self.known = nn.Sequential(*known_layers)
            head_layers, width = [], channels + width
            for units in spec["head_units"]:
                head_layers += [nn.Linear(width, units), nn.ReLU()]
                width = units
            self.head = nn.Sequential(*head_layers)
            self.mean, self.log_var = nn.Linear(width, 2), nn.Linear(width, 2)

        def forward(self, pH, t, known):
            spacing = t[:, 1:] - t[:, :-1]
            dt = torch.cat([spacing[:, :1], spacing], dim=1)
            x = torch.stack([pH - known[:, 4:5], t / 30.0, dt], dim=1)
            if self.input_pool > 1:
                x = F.avg_pool1d(x, self.input_pool, ceil_mode=True)
            for block in self.blocks:
                x = block(x)
            logits = self.score(x)[:, 0]
            u = torch.linspace(0, 1, logits.shape[1], device=logits.device)
            weights = torch.softmax(logits + self.early_bias * torch.exp(-u / 0.2), dim=1)
            pooled = (weights[:, None, :] * x).sum(dim=2)
            h = self.head(torch.cat([pooled, self.known(known)], dim=1))
            return self.mean(h), self.log_var(h)

    def loss_fn(mean, log_var, y):
        log_var = log_var.clamp(-4.6, 10.0)
        var = log_var.exp()
        nll = 0.5 * np.log(2 * np.pi) + 0.5 * log_var + 0.5 * (y - mean) ** 2 / var
        return (nll + 0.01 * (var - 0.1) ** 2).mean()

    net = Net().to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5, eps=1e-7)
    x, y = make_data(batch * n_batches, steps)
    data = [{k: torch.from_numpy(v[i * batch:(i + 1) * batch]).to(device) for k, v in x.items()}
            for i in range(n_batches)]
    targets = [torch.from_numpy(y[i * batch:(i + 1) * batch]).to(device) for i in range(n_batches)]

    def run_pass():
        net.train()
        for inputs, target in zip(data, targets):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(*net(inputs["pH"], inputs["t"], inputs["known"]), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return run_pass, {"params": sum(p.numel() for p in net.parameters()), "device": device}


# --- driver --------------------------------------------------------------------------------

def worker(case, batch, n_batches, repeats):
    """Keras on this process's backend and plain PyTorch, interleaved."""
    architecture, steps = case.split(":")
    keras_run, keras_info = keras_pass(architecture, int(steps), batch, n_batches)
    torch_run, torch_info = pytorch_pass(architecture, int(steps), batch, n_batches)
    rates = interleaved_rates({"keras": keras_run, "pytorch": torch_run}, batch * n_batches,
                              repeats)
    return dict(rates, **keras_info, device=torch_info["device"])


def run_worker(backend, case, batch, n_batches, repeats):
    env = dict(os.environ, KERAS_BACKEND=backend, **SINGLE_THREAD)
    command = [sys.executable, __file__, "--worker", "--cases", case, "--batch-size",
               str(batch), "--batches", str(n_batches), "--repeats", str(repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{backend} {case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES,
                        help="architecture:readings, e.g. compact:100 recipe:1000")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=8, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (best is kept)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.cases[0], args.batch_size, args.batches, args.repeats)))
        return

    rows = []
    started = time.perf_counter()
    for case in args.cases:
        architecture, steps = case.split(":")
        batch, n_batches = batches_for(architecture, int(steps), args)
        on_torch = run_worker("torch", case, batch, n_batches, args.repeats)
        on_jax = run_worker("jax", case, batch, n_batches, args.repeats)
        rows.append({"case": case, "batch": batch, "params": on_torch["params"],
                     "pytorch": on_torch["pytorch"], "keras_torch": on_torch["keras"],
                     "keras_jax": on_jax["keras"],
                     "torch_ratio": on_torch["keras"] / on_torch["pytorch"],
                     "jax_ratio": on_jax["keras"] / on_jax["pytorch"]})
        print(f"  {case}: PyTorch {on_torch['pytorch']:.1f} | Keras/torch {on_torch['keras']:.1f}"
              f" | Keras/jax {on_jax['keras']:.1f} (PyTorch beside it {on_jax['pytorch']:.1f})"
              f" samples/s [{on_torch['device']}]", file=sys.stderr, flush=True)

    recipe = {r["case"].split(":")[1]: r for r in rows if r["case"].startswith("recipe:")}
    print(f"\nTraining throughput, one CPU thread (samples per CPU-second; best of "
          f"{args.repeats} interleaved passes)")
    print(f"{'case':<14}{'params':>9}{'batch':>7}{'PyTorch':>10}{'Keras/torch':>13}"
          f"{'Keras/jax':>11}{'torch/PT':>10}{'jax/PT':>8}{'vs recipe':>11}")
    for r in rows:
        steps = r["case"].split(":")[1]
        speedup = (f"{r['keras_torch'] / recipe[steps]['keras_torch']:.1f}x"
                   if steps in recipe and not r["case"].startswith("recipe") else "")
        print(f"{r['case']:<14}{r['params']:>9}{r['batch']:>7}{r['pytorch']:>10.1f}"
              f"{r['keras_torch']:>13.1f}{r['keras_jax']:>11.1f}"
              f"{r['torch_ratio']:>9.2f}x{r['jax_ratio']:>7.2f}x"
              f"{speedup:>11}")
    print(f"(torch/PT, jax/PT: each against PyTorch interleaved in the same process; vs "
          f"recipe: Keras/torch compact over Keras/torch recipe at the same readings; "
          f"{time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
