"""Worker throughput and learning benchmark (CPU-friendly).

Two measurements per registered network (``tao_sdk.worker.NETWORKS``), on the network task's
synthetic data at a tiny configuration (``TAO_WORKER_BACKBONE_SCALE=tiny``, the plugin's
``tiny_overrides``). Everything network-specific comes from the plugin and its task, so a new
network is benchmarked by registering it:

1. **Learning**: trains with the worker and reports seconds per epoch (warm epochs, excluding
   the first), steps per second, and the skill's monitoring metric (``skill_info.yaml``) of
   the untrained model (one epoch at lr 1e-12, as the demo) vs the trained one.
2. **Worker overhead**: training throughput (images/s) of the worker (``python -m
   tao_sdk.worker <net> train``, run in-process) vs a plain hand-written loop doing exactly
   the worker's step (:func:`plain_loop`: same seed, model, frozen parts, data order, forward
   and loss, AdamW parameter groups and learning-rate schedule), so both sides compute the
   same losses - checked: the run fails when their per-epoch losses differ by more than
   :data:`LOSS_TOLERANCE`. Neither side validates or checkpoints inside the measured epochs:
   the worker's spec sets ``validation_interval`` and ``checkpoint_interval`` beyond
   ``num_epochs``, and its ``time_per_epoch`` (read from ``status.json``) stops before the
   final checkpoint that it always writes after the last epoch. The process is warmed up by
   one unmeasured plain epoch; then only warm epochs (all but the first of each run) count.
   Plain and worker runs alternate ``--repeats`` times (A/B, B/A, ...); each repeat gives the
   ratio of its two runs' median warm epochs, and the reported ``overhead_ratio`` is the median
   over the repeats with its spread (min, max), next to the ratio of the pooled medians and of
   each side's fastest warm epoch (interference from other processes on a shared machine only
   adds time) and the load average. Next to the wall-clock figures, ``overhead_ratio_cpu``
   compares the process CPU seconds per warm step (:class:`StepClock`; median over the
   repeats, with its spread), which other processes on a shared machine do not inflate.
   ``--threads N`` sets torch's intra-op threads for both
   sides: on a loaded machine two threads per process make every parallel op wait for a
   descheduled thread, which swamps the comparison; one thread keeps it meaningful.
   ``overhead = plain images/s / worker images/s`` (target <= 1.10)::

    python benchmarks/worker_throughput.py            # both networks: 30-epoch learning run
                                                      # + overhead (8 epochs x 3 repeats)
    python benchmarks/worker_throughput.py --smoke    # 1-epoch learning (each network)
                                                      # + 3-epoch overhead (first network)
    python benchmarks/worker_throughput.py --overhead-only --network rtdetr --json out.json
    python benchmarks/worker_throughput.py --overhead-only --network oneformer --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tao_sdk.worker import spec as S  # noqa: E402


def _plugin(network: str):
    from tao_sdk.worker.registry import get

    return get(network)


def tiny_spec(network: str, ds: dict, results_dir: str, size: int, epochs: int) -> dict[str, Any]:
    """A tiny train spec for ``network`` on the synthetic dataset ``ds``: the task's
    ``tiny_spec`` (the plugin's ``tiny_overrides``), a checkpoint at the end, about four
    validations."""
    plugin = _plugin(network)
    spec = plugin.task.tiny_spec(plugin, ds, results_dir, size, epochs)
    spec["train"].update(checkpoint_interval=epochs, validation_interval=max(1, epochs // 4))
    return spec


def _metric(network: str) -> tuple[str, str]:
    """The KPI compared untrained vs trained: the plugin's ``demo_metric``, else the skill's
    monitoring metric."""
    from tao_sdk.bank import SkillBank

    return _plugin(network).demo_metric or SkillBank().get(network).metric


def _train(spec: dict[str, Any], network: str, workdir: Path, tag: str
           ) -> tuple[int, list[dict[str, Any]], float]:
    """Run the worker's train in-process; return (exit code, status lines, wall seconds)."""
    from tao_sdk.worker.cli import main

    spec_file = workdir / f"{network}-{tag}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    t0 = time.monotonic()
    code = main([network, "train", "-e", str(spec_file)])
    wall = time.monotonic() - t0
    lines = [json.loads(x) for x in
             (Path(spec["results_dir"]) / "train" / "status.json").read_text().splitlines()]
    return code, lines, wall


def run(network: str, epochs: int, n_train: int, n_val: int, size: int,
        workdir: Path) -> dict[str, Any]:
    """Train ``network`` for ``epochs``; return timing and the skill's monitoring metric of the
    untrained model (one epoch at lr 1e-12, as the demo) vs the trained one."""
    from tao_sdk.results import parse_duration

    plugin = _plugin(network)
    metric, direction = _metric(network)
    ds = plugin.task.write_synthetic(workdir / f"data-{plugin.task.name}", n_train, n_val, size)
    spec = tiny_spec(network, ds, str(workdir / f"results-{network}"), size, epochs)
    base = copy.deepcopy(spec)
    base["results_dir"] = str(workdir / f"results-{network}-untrained")
    for key, value in plugin.demo_untrained_overrides().items():
        S.set_value(base, key, value)
    _code, base_lines, _wall = _train(base, network, workdir, "untrained")
    before = base_lines[-1].get("kpi", {}).get(metric, float("nan"))
    code, lines, wall = _train(spec, network, workdir, "trained")
    epochs_lines = [ln for ln in lines if "time_per_epoch" in ln]
    times = [parse_duration(ln["time_per_epoch"]) for ln in epochs_lines]
    warm = times[1:] or times
    steps_per_epoch = epochs_lines[0]["max_step"] // epochs if epochs_lines else 0
    per_epoch = sum(warm) / len(warm) if warm else float("nan")
    kpi = lines[-1].get("kpi", {})
    return {
        "network": network, "exit_code": code, "epochs": epochs, "train_images": n_train,
        "val_images": n_val, "image_size": size,
        "batch_size": S.get(spec, plugin.task.batch_size_key), "steps_per_epoch": steps_per_epoch,
        "first_epoch_s": round(times[0], 3) if times else None,
        "seconds_per_epoch": round(per_epoch, 3),
        "steps_per_second": round(steps_per_epoch / per_epoch, 2) if per_epoch else None,
        "wall_s": round(wall, 1), "metric": metric, "direction": direction,
        "untrained": round(float(before), 4),
        "trained": round(float(kpi.get(metric, float("nan"))), 4),
        "cpu_threads": __import__("torch").get_num_threads(),
    }


#: Target of the worker overhead (plain images/s / worker images/s).
OVERHEAD_TARGET = 1.10
#: Largest relative difference of the per-epoch mean losses of the two sides of the overhead
#: comparison: they run the same computation, so only float reordering may differ.
LOSS_TOLERANCE = 1e-3
_SEED = 1234  # the worker's default train.seed


def overhead_spec(network: str, ds: dict, results_dir: str, size: int, epochs: int
                  ) -> dict[str, Any]:
    """The spec both sides of the overhead comparison are built from: no validation data,
    validation and checkpoint intervals beyond the run."""
    spec = tiny_spec(network, ds, results_dir, size, epochs)
    S.set_value(spec, _plugin(network).task.val_data_key, None)
    spec["train"].update(validation_interval=epochs + 1, checkpoint_interval=epochs + 1,
                         seed=_SEED)
    return spec


def plain_loop(network: str, spec: dict[str, Any], epochs: int, device: str = "cpu",
               workers: int = 0) -> dict[str, Any]:
    """Train the spec's model with a hand-written fp32 loop; return per-epoch seconds and mean
    losses.

    The same work as the worker's train step, nothing more: same seeding (``train.seed`` for
    python / numpy / torch, so the same initial weights and random draws), same model (the
    plugin's ``build_arch`` / ``build_model``; the backbone frozen when
    ``model.train_backbone`` is false), same data (the task's ``load_train`` /
    ``train_dataset``, same batch size, the loader reseeded with ``seed + epoch`` every epoch
    as the worker does), same forward and loss (the plugin's), same optimizer (AdamW over the
    plugin's ``param_groups``: backbone learning rate, no decay on norms) and the same
    per-step learning-rate schedule (the plugin's ``lr_factor`` or the engine's). On the CPU
    both sides therefore compute the same losses (checked by :func:`overhead`). No
    validation, no checkpoint, no status lines, no mixed precision, no fused optimizer, no
    pinned memory (the baseline the worker's speed-ups are measured against on a GPU).
    """
    import torch

    from tao_sdk.worker.engine import runtime as R
    from tao_sdk.worker.engine.train import build_lr_schedule, build_optimizer, freeze_backbone

    plugin = _plugin(network)
    seed = R.seed_everything(spec)
    arch = plugin.build_arch(spec)
    dev = torch.device(device)
    model = plugin.build_model(arch)
    freeze_backbone(plugin, spec, model)
    model.to(dev)
    samples, _val = plugin.task.load_train(spec, arch)
    ds, coll = plugin.task.train_dataset(plugin, spec, arch, samples, seed)
    gen = torch.Generator()
    loader = torch.utils.data.DataLoader(ds, batch_size=S.get(spec, plugin.task.batch_size_key),
                                         shuffle=True, collate_fn=coll, generator=gen,
                                         num_workers=workers, persistent_workers=bool(workers))
    opt = build_optimizer(plugin, spec, model)  # no device: the unfused AdamW
    sched = build_lr_schedule(plugin, spec, opt, len(loader))
    model.train()
    times, losses = [], []
    for epoch in range(epochs):
        gen.manual_seed(seed + epoch)
        t0 = time.perf_counter()
        total = 0.0
        for batch in loader:
            loss = plugin.loss(plugin.forward(model, batch, dev, with_labels=True), arch)
            total += float(loss.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(total / len(loader))
    return {"epoch_s": times, "steps_per_epoch": len(loader), "images": len(ds),
            "losses": losses}


def worker_loop(network: str, spec: dict[str, Any], workdir: Path, tag: str) -> dict[str, Any]:
    """Train with the worker (in-process CLI); return per-epoch seconds from status.json."""
    from tao_sdk.results import parse_duration
    from tao_sdk.worker.cli import main

    spec = copy.deepcopy(spec)
    spec["results_dir"] = str(workdir / f"results-overhead-{network}-{tag}")
    spec_file = workdir / f"overhead-{network}-{tag}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    code = main([network, "train", "-e", str(spec_file)])
    lines = [json.loads(x) for x in (Path(spec["results_dir"]) / "train" / "status.json")
             .read_text().splitlines()]
    epochs = [ln for ln in lines if "time_per_epoch" in ln]
    if code != 0 or any(set(ln.get("kpi", {})) - {"train_loss"} for ln in epochs):
        raise RuntimeError(f"worker overhead run failed or validated: exit {code}, "
                           f"{lines[-1]['message'] if lines else 'no status'}")
    return {"epoch_s": [parse_duration(ln["time_per_epoch"]) for ln in epochs],
            "steps_per_epoch": epochs[0]["max_step"] // len(epochs) if epochs else 0,
            "losses": [float(ln["kpi"]["train_loss"]) for ln in epochs]}


def _loss_gap(plain: list[float], worker: list[float]) -> float:
    """Largest relative difference of the two sides' per-epoch mean losses (0 = the same
    computation)."""
    return max(abs(a - b) / max(abs(a), abs(b), 1e-12) for a, b in zip(plain, worker))


class StepClock:
    """Process CPU seconds per training step of whatever trains with ``network``'s plugin
    (the plain loop or the worker, in this process): it stamps ``time.process_time()`` at each
    training call of the plugin's ``forward`` (``with_labels=True``), once per step on both
    sides. Unlike wall time this is not inflated by other processes on a shared machine (with
    one torch thread; with more, threads spinning for a descheduled peer add CPU time too).

    Use as ``with StepClock(network) as clock: ...``; then :meth:`warm_mean` gives the mean
    CPU seconds of the steps after the first epoch (each step's time runs to the next step's
    start, so epoch-end work such as the worker's status line counts too)."""

    def __init__(self, network: str) -> None:
        self.plugin = _plugin(network)
        self.stamps: list[float] = []

    def __enter__(self) -> "StepClock":
        inner = self.plugin.forward

        def forward(model, batch, device, with_labels):
            if with_labels:
                self.stamps.append(time.process_time())
            return inner(model, batch, device, with_labels)

        self.plugin.forward = forward  # instance attribute: shadows the class method
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.plugin.forward

    def warm_mean(self, steps_per_epoch: int) -> float:
        """Mean CPU seconds of the steps of epochs 2.. (the last step has no end stamp)."""
        deltas = [b - a for a, b in zip(self.stamps, self.stamps[1:])][steps_per_epoch:]
        return sum(deltas) / len(deltas) if deltas else float("nan")


def _clocked(fn, network: str, *args: Any) -> dict[str, Any]:
    """``fn(network, *args)`` (:func:`plain_loop` / :func:`worker_loop`) with its mean warm
    step CPU time added as ``step_cpu_s``."""
    with StepClock(network) as clock:
        out = fn(network, *args)
    out["step_cpu_s"] = clock.warm_mean(out["steps_per_epoch"])
    return out


def overhead(network: str, epochs: int, n_train: int, size: int, repeats: int,
             workdir: Path) -> dict[str, Any]:
    """Worker vs plain-loop training throughput on warm epochs (see the module docstring).

    Each repeat is one plain run and one worker run back to back (alternating which goes
    first: A/B, B/A, ...); its ratio compares the two runs' median warm epochs, so a load
    change on a shared machine between repeats does not bias it. Reports the median ratio over
    the repeats, its spread (min, max), the ratio of the pooled medians and of the fastest warm
    epochs, the load average, and the largest relative loss difference between the two sides
    (both compute the same steps; a difference above :data:`LOSS_TOLERANCE` means they did not
    do the same work and raises).
    """
    ds = _plugin(network).task.write_synthetic(workdir / f"data-overhead-{n_train}-{size}",
                                               n_train, 2, size)
    spec = overhead_spec(network, ds, str(workdir / "unused"), size, epochs)
    plain_warm: list[float] = []
    worker_warm: list[float] = []
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    gaps: list[float] = []
    steps = {}
    load_before = os.getloadavg()
    # The first model run in a process is slow (kernel selection, allocator growth): warm the
    # process up once, unmeasured, then alternate which side goes first.
    plain_loop(network, spec, 1)
    for r in range(repeats):
        if r % 2 == 0:
            p = _clocked(plain_loop, network, spec, epochs)
            w = _clocked(worker_loop, network, spec, workdir, str(r))
        else:
            w = _clocked(worker_loop, network, spec, workdir, str(r))
            p = _clocked(plain_loop, network, spec, epochs)
        plain_warm += p["epoch_s"][1:]
        worker_warm += w["epoch_s"][1:]
        ratios.append(statistics.median(w["epoch_s"][1:]) / statistics.median(p["epoch_s"][1:]))
        cpu_ratios.append(w["step_cpu_s"] / p["step_cpu_s"])
        gaps.append(_loss_gap(p["losses"], w["losses"]))
        steps = {"plain": p["steps_per_epoch"], "worker": w["steps_per_epoch"]}
    if steps["plain"] != steps["worker"]:
        raise RuntimeError(f"the two sides ran different step counts: {steps}")
    if max(gaps) > LOSS_TOLERANCE:
        raise RuntimeError(
            f"{network}: the plain loop and the worker computed different losses (relative "
            f"difference {max(gaps):.2e} > {LOSS_TOLERANCE}): they did not train the same "
            "model on the same data; fix plain_loop to mirror the worker's step")
    plain_s = statistics.median(plain_warm)
    worker_s = statistics.median(worker_warm)
    plain_ips, worker_ips = n_train / plain_s, n_train / worker_s
    ratio = statistics.median(ratios)
    # Interference from other processes only adds time: the fastest warm epochs estimate what
    # each side costs by itself (reported next to the median-based figure).
    ratio_best = min(worker_warm) / min(plain_warm)
    return {
        "network": network, "benchmark": "overhead", "epochs": epochs,
        "warm_epochs_per_side": len(plain_warm), "repeats": repeats, "train_images": n_train,
        "image_size": size, "batch_size": S.get(spec, _plugin(network).task.batch_size_key),
        "steps_per_epoch": steps["plain"],
        "plain_epoch_s": round(plain_s, 4), "worker_epoch_s": round(worker_s, 4),
        "plain_images_per_s": round(plain_ips, 2), "worker_images_per_s": round(worker_ips, 2),
        "overhead_ratio": round(ratio, 3),
        "overhead_ratio_spread": [round(min(ratios), 3), round(max(ratios), 3)],
        "overhead_ratio_per_repeat": [round(x, 3) for x in ratios],
        "overhead_ratio_pooled": round(worker_s / plain_s, 3),
        "overhead_ratio_best_epochs": round(ratio_best, 3),
        "overhead_ratio_cpu": round(statistics.median(cpu_ratios), 3),
        "overhead_ratio_cpu_spread": [round(min(cpu_ratios), 3), round(max(cpu_ratios), 3)],
        "loss_max_rel_diff": float(f"{max(gaps):.3g}"),
        "target": OVERHEAD_TARGET,
        "meets_target": ratio <= OVERHEAD_TARGET,
        "cpu_threads": __import__("torch").get_num_threads(),
        "load_average": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


#: Target of the tracking overhead (worker with every tracker on / off, warm epochs).
TRACKING_TARGET = 1.03


def _tracking_env(on: bool, workdir: Path) -> dict[str, str | None]:
    """The environment of a worker run with every tracker on (W&B offline, TensorBoard,
    MLflow on a SQLite file) or off."""
    if not on:
        return {"TAO_WORKER_TENSORBOARD": "0", "MLFLOW_TRACKING_URI": None, "WANDB_MODE": None}
    return {"TAO_WORKER_TENSORBOARD": "1", "WANDB_MODE": "offline",
            "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'tracking-bench-mlflow.db'}"}


def _tracked_run(network: str, spec: dict[str, Any], workdir: Path, tag: str, on: bool
                 ) -> dict[str, Any]:
    """:func:`worker_loop` with tracking on or off (the environment is restored after)."""
    saved = {k: os.environ.get(k) for k in _tracking_env(on, workdir)}
    spec = copy.deepcopy(spec)
    spec["wandb"] = {"enable": on, "project": "tracking-bench"}
    try:
        for key, value in _tracking_env(on, workdir).items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        return _clocked(worker_loop, network, spec, workdir, f"{tag}-{'on' if on else 'off'}")
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def tracking_overhead(network: str, epochs: int, n_train: int, size: int, repeats: int,
                      workdir: Path) -> dict[str, Any]:
    """The worker with every tracker on vs off (per-step loss and learning rates to W&B
    offline, TensorBoard and MLflow/SQLite; per-epoch KPIs): the median over alternating
    repeats of the ratio of median warm epochs, and of CPU seconds per warm step."""
    ds = _plugin(network).task.write_synthetic(workdir / f"data-overhead-{n_train}-{size}",
                                               n_train, 2, size)
    spec = overhead_spec(network, ds, str(workdir / "unused"), size, epochs)
    ratios, cpu_ratios = [], []
    _tracked_run(network, spec, workdir, "warmup", True)  # imports, MLflow tables: unmeasured
    for r in range(repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        runs = {on: _tracked_run(network, spec, workdir, str(r), on) for on in order}
        ratios.append(statistics.median(runs[True]["epoch_s"][1:])
                      / statistics.median(runs[False]["epoch_s"][1:]))
        cpu_ratios.append(runs[True]["step_cpu_s"] / runs[False]["step_cpu_s"])
    ratio = statistics.median(ratios)
    return {"network": network, "benchmark": "tracking_overhead", "epochs": epochs,
            "repeats": repeats, "train_images": n_train, "image_size": size,
            "steps_per_epoch": runs[True]["steps_per_epoch"],
            "tracking_ratio": round(ratio, 3),
            "tracking_ratio_spread": [round(min(ratios), 3), round(max(ratios), 3)],
            "tracking_ratio_cpu": round(statistics.median(cpu_ratios), 3),
            "target": TRACKING_TARGET, "meets_target": ratio <= TRACKING_TARGET,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def print_table(learning: list[dict[str, Any]], overheads: list[dict[str, Any]],
                smoke: bool = False) -> None:
    """Human summary of both measurements."""
    if learning:
        print("\nlearning (worker)")
        print(f"{'network':<16}{'s/epoch':>9}{'steps/s':>9}{'metric':>12}{'untrained':>11}"
              f"{'trained':>9}")
        for r in learning:
            print(f"{r['network']:<16}{r['seconds_per_epoch']:>9.3f}"
                  f"{r['steps_per_second'] or 0:>9.2f}{r['metric']:>12}{r['untrained']:>11.4f}"
                  f"{r['trained']:>9.4f}")
    if overheads:
        print("\nworker overhead: training throughput on warm epochs (no validation, no "
              "checkpoint)")
        print(f"{'network':<16}{'images':>7}{'px':>5}{'steps/ep':>9}{'plain img/s':>13}"
              f"{'worker img/s':>14}{'overhead':>10}{'spread':>15}{'(best ep.)':>11}"
              f"{'cpu/step':>10}{'target':>13}")
        for r in overheads:
            verdict = "ok" if r["meets_target"] else "MISS"
            lo, hi = r["overhead_ratio_spread"]
            print(f"{r['network']:<16}{r['train_images']:>7}{r['image_size']:>5}"
                  f"{r['steps_per_epoch']:>9}{r['plain_images_per_s']:>13.2f}"
                  f"{r['worker_images_per_s']:>14.2f}{r['overhead_ratio']:>10.3f}"
                  f"{f'{lo:.3f}-{hi:.3f}':>15}{r['overhead_ratio_best_epochs']:>11.3f}"
                  f"{r['overhead_ratio_cpu']:>10.3f}"
                  f"{'<= ' + str(r['target']) + ' ' + verdict:>13}")
        print("overhead = plain images/s / worker images/s: median over the A/B repeats of each "
              "repeat's median warm epochs (spread: min-max over the repeats); (best ep.) the "
              "same on each side's fastest warm epoch; cpu/step: the same with process CPU "
              "seconds per warm step (median over the repeats). Both sides computed the same losses "
              f"(largest relative difference {max(r['loss_max_rel_diff'] for r in overheads):.1e})"
              f"; {overheads[0]['cpu_threads']} torch thread(s), load average "
              f"{overheads[0]['load_average'][0]:.2f} at the start")
        if smoke:
            print("smoke run: 2 warm epochs of 1 step per side - a functional check, too short "
                  "for a stable ratio; run without --smoke for the figure")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints one JSON object per measurement, then a table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from tao_sdk.worker import NETWORKS

    p.add_argument("--network", choices=[*NETWORKS, "all"], default="all")
    p.add_argument("--epochs", type=int, default=30, help="epochs of the learning run")
    p.add_argument("--overhead-epochs", type=int, default=8,
                   help="epochs per overhead run (the first is the warm-up)")
    p.add_argument("--repeats", type=int, default=3,
                   help="alternating plain / worker runs of the overhead comparison")
    p.add_argument("--smoke", action="store_true",
                   help="1-epoch learning run on 4 images of 64 px for every network; 3-epoch "
                        "overhead run for the first network only")
    p.add_argument("--overhead-only", action="store_true", help="skip the learning run")
    p.add_argument("--no-overhead", action="store_true", help="skip the overhead comparison")
    p.add_argument("--tracking", action="store_true",
                   help="also compare the worker with every tracker on vs off (W&B offline, "
                        "TensorBoard, MLflow on SQLite; needs the tracking extra)")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads for both sides (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads > 0:
        __import__("torch").set_num_threads(args.threads)
    os.environ.setdefault("TAO_WORKER_BACKBONE_SCALE", "tiny")
    # smoke (CI): every code path once at the smallest sizes - one trained epoch, one step per
    # overhead epoch (the first is the warm-up; 3 epochs leave 2 warm steps per side, the least
    # that gives StepClock a complete warm step)
    epochs, n_train, n_val, size = ((1, 4, 2, 64) if args.smoke else (args.epochs, 32, 8, 128))
    o_epochs, o_repeats = (3, 1) if args.smoke else (max(2, args.overhead_epochs),
                                                     max(1, args.repeats))
    nets = list(NETWORKS) if args.network == "all" else [args.network]
    learning: list[dict[str, Any]] = []
    overheads: list[dict[str, Any]] = []
    overheads_tracking: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tao-worker-bench-") as tmp:
        os.environ.setdefault("TAO_WORKER_CACHE", str(Path(tmp) / "cache"))
        for net in nets:
            if not args.overhead_only:
                res = run(net, epochs, n_train, n_val, size, Path(tmp))
                print(json.dumps(res), flush=True)
                learning.append(res)
            # smoke: the overhead comparison's code (plain loop vs worker) once, on the first
            # network; every network's training path runs in its learning run above
            if not args.no_overhead and (not args.smoke or net == nets[0]):
                res = overhead(net, o_epochs, n_train, size, o_repeats, Path(tmp))
                print(json.dumps(res), flush=True)
                overheads.append(res)
            if args.tracking:
                res = tracking_overhead(net, o_epochs, n_train, size, o_repeats, Path(tmp))
                print(json.dumps(res), flush=True)
                overheads_tracking.append(res)
    print_table(learning, overheads, smoke=args.smoke)
    for r in overheads_tracking:
        print(f"tracking on/off {r['network']}: x{r['tracking_ratio']} per warm epoch (spread "
              f"{r['tracking_ratio_spread']}), x{r['tracking_ratio_cpu']} CPU per step, "
              f"target <= {r['target']}")
    if args.json:
        args.json.write_text(json.dumps(learning + overheads + overheads_tracking, indent=2))
    return 0 if all(r["exit_code"] == 0 for r in learning) else 1


if __name__ == "__main__":
    sys.exit(main())
