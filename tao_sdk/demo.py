"""``tao-skills demo --network NET``: synthetic data -> train -> evaluate -> export -> inference.

Everything goes through the public SDK on the local platform, exactly as an agent would drive it:
the network's task writes a synthetic dataset into the workspace's storage root in the same
layout as a real dataset (detection: ``images.tar.gz``, ``annotations.json``,
``label_map.txt``), then jobs are created with ``create_job`` and followed with
``wait_for_job``. To show the model really learns, the same model is also trained for one epoch
at a learning rate of 1e-12 (weights effectively unchanged; the worker rejects lr=0) and the
skill's monitoring metric (``monitoring_metric`` of ``skill_info.yaml``: name and direction)
of both runs is printed. gen_trt_engine runs only where an NVIDIA GPU and the ``tensorrt``
package are present; otherwise it is skipped with the reason.

What a network brings to the demo (no code here names one): its plugin's ``tiny_overrides``,
``demo_plan``, ``demo_train_overrides`` / ``demo_untrained_overrides``, and its task's
``write_synthetic``, ``demo_datasets``, ``demo_overrides`` and ``preview_dir`` (see
:mod:`tao_sdk.worker.plugin` and :mod:`tao_sdk.worker.tasks`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .errors import TaoSkillsError
from .extras import install_command, require_installed
from .jobs import Job, create_job, wait_for_job
from .results import format_progress
from .workspace import Workspace, default_workspace

#: The network ``tao-skills demo`` runs without ``--network`` (and ``make demo``).
DEFAULT_NETWORK = "rtdetr"
#: Environment of the demo's jobs (unless already set): the worker builds the named backbone
#: with one narrow block per stage. The tiny preset (``tools/gen_presets.py``) carries it too.
DEMO_ENV = {"TAO_WORKER_BACKBONE_SCALE": "tiny"}


def _say(message: str, json_mode: bool) -> None:
    print(message, file=sys.stderr if json_mode else sys.stdout, flush=True)


def _run(skill: str, action: str, json_mode: bool, **kwargs: Any) -> Job:
    job = create_job(skill, action, **kwargs)
    _say(f"{action}: {job.id} started", json_mode)
    shown: list[str] = []

    def progress(j: Job) -> None:
        line = format_progress(j.progress) if j.progress else j.status.value
        if not shown or shown[-1] != line:
            shown.append(line)
            _say("  " + line, json_mode)

    job = wait_for_job(job.id, poll_interval=0.5, workspace=kwargs.get("workspace"), on_progress=progress)
    if job.status.value != "SUCCESS":
        raise TaoSkillsError(f"demo {action} job {job.id} ended {job.status.value}: {job.result.get('message')}; "
                             f"see `tao-skills logs {job.id}`")
    return job


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot run here (no NVIDIA GPU, or ``import tensorrt`` fails even with
    CUDA), ``None`` when it can."""
    from .worker.trt import nvidia_gpu_visible

    if not nvidia_gpu_visible():
        return "TensorRT needs an NVIDIA GPU; none here"
    try:
        import tensorrt  # noqa: F401  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA install
        return (f"`import tensorrt` failed ({type(exc).__name__}: {exc}); on the GPU node: "
                f"{install_command('gpu')}")
    return None


def make_demo_dataset(workspace: Workspace, plugin, n_train: int, n_val: int, size: int) -> dict[str, str]:
    """Write (once) the task's synthetic dataset under the storage root; returns the split roots."""
    task = plugin.task
    root = Path(workspace.datasets_uri(f"demo-{task.name}-{n_train}-{n_val}-{size}"))
    marker = root / ".complete"
    if not marker.exists():
        if root.exists():
            shutil.rmtree(root)
        task.write_synthetic(root, n_train, n_val, size, seed=0)
        marker.write_text("ok\n")
    return {"train": str(root / "train"), "val": str(root / "val")}


def _require_worker(network: str):
    """The network's worker plugin; a clear error when the worker or the network is missing."""
    require_installed("worker", "torch", "transformers", "PIL", purpose="tao-skills demo (it trains a real model)")
    from .worker import NETWORKS
    from .worker import registry

    if network not in NETWORKS:
        raise TaoSkillsError(f"tao-skills demo --network {network}: the worker runs {', '.join(NETWORKS)}; "
                             "pick one of those")
    return registry.get(network)


#: The demo's quantize jobs: name -> ``quantize.*`` overrides (every module the backend covers); a
#: mode refused at plan time here (torchao int4 without its kernels) is reported with the reason.
QUANTIZE_MODES: dict[str, dict[str, Any]] = {
    "torchao_int8_weight_only": {"quantize.backend": "torchao", "quantize.mode": "weight_only_ptq",
                                 "quantize.layers": [{"module_name": "*", "weights": {"dtype": "int8"}}]},
    "torchao_fp8_weight_only": {"quantize.backend": "torchao", "quantize.mode": "weight_only_ptq",
                                "quantize.layers": [{"module_name": "*",
                                                     "weights": {"dtype": "float8_e4m3fn"}}]},
    "torchao_int4_weight_only": {"quantize.backend": "torchao", "quantize.mode": "weight_only_ptq",
                                 "quantize.layers": [{"module_name": "*", "weights": {"dtype": "int4"}}]},
    "modelopt_int8_static": {"quantize.backend": "modelopt.pytorch", "quantize.mode": "static_ptq",
                             "quantize.layers": [{"module_name": "*", "weights": {"dtype": "int8"},
                                                  "activations": {"dtype": "int8"}}]},
}


def _preview_sheet(plugin, inference: Job, workspace: Workspace, network: str) -> Path | None:
    """A contact sheet of the first inference previews (the task's ``preview_dir`` images), or
    None when the inference job wrote none."""
    preview = plugin.task.preview_dir
    shown = sorted(p for p in inference.artifacts() if preview and f"/{preview}/" in p.replace("\\", "/")
                   and p.lower().endswith((".png", ".jpg", ".jpeg")))
    return contact_sheet(shown[:8], workspace.root / f"demo_predictions_{network}.png") if shown else None


def run_demo(json_mode: bool = False, quick: bool = False, workspace: Workspace | None = None,
             network: str = DEFAULT_NETWORK, with_distill: bool = False, with_quantize: bool = False) -> int:
    """Run the demo of ``network`` and print KPIs, artifact paths and a preview PNG (JSON with
    ``json_mode``: ``metric``, ``direction``, ``untrained``, ``trained``, ``onnx``, ``jobs``...);
    returns the exit status.

    ``with_distill``: the plugin's smaller student (``demo_distill``) trained alone and distilled
    from the trained model, same epochs (JSON ``distill``: ``teacher``, ``student_alone``,
    ``student_distilled``, ``margin``, ``epochs``). ``with_quantize``: a
    quantize job per :data:`QUANTIZE_MODES` on the trained model (JSON ``quantize``: per mode
    the float and quantized size and metric)."""
    from .bank import SkillBank

    plugin = _require_worker(network)
    for key, value in DEMO_ENV.items():
        os.environ.setdefault(key, value)
    workspace = workspace or default_workspace()
    started = time.monotonic()
    plan = plugin.demo_plan(quick)
    setup = _distill_setup(network, plugin, plan) if with_distill else None
    if setup and setup.get("n_val"):  # a val split large enough for the student comparison
        plan = {**plan, "n_val": max(plan["n_val"], int(setup["n_val"]))}
    metric, direction = plugin.demo_metric or SkillBank().get(network).metric
    roots = make_demo_dataset(workspace, plugin, plan["n_train"], plan["n_val"], plan["size"])
    _say(f"dataset: {plan['n_train']} train / {plan['n_val']} val synthetic {plugin.task.name} samples in "
         f"{Path(roots['train']).parent}", json_mode)
    datasets = plugin.task.demo_datasets(roots)
    overrides = {**plugin.demo_train_overrides(plan["epochs"], plan["size"]), **plan.get("overrides", {})}
    kw: dict[str, Any] = dict(workspace=workspace, automl_policy="off")
    if plugin.task.demo_format:
        kw["dataset_format"] = plugin.task.demo_format

    def child(action: str, parent: Job, **extra: Any) -> Job:
        return _run(network, action, json_mode, parent_job_id=parent.id,
                    spec_overrides=plugin.task.demo_overrides(action, plan["size"]), **kw, **extra)

    baseline = _run(network, "train", json_mode, datasets=datasets["train"], **kw,
                    spec_overrides={**overrides, **plugin.demo_untrained_overrides()})
    train = _run(network, "train", json_mode, datasets=datasets["train"], spec_overrides=overrides, **kw)
    evaluate = child("evaluate", train, datasets=datasets["evaluate"])
    export = child("export", train, datasets=datasets.get("export"))
    inference = child("inference", train, datasets=datasets["inference"])
    engine = None
    why_not = tensorrt_unavailable()
    if why_not is None:
        engine = child("gen_trt_engine", export, datasets=datasets["gen_trt_engine"])
    else:
        _say(f"gen_trt_engine: skipped ({why_not})", json_mode)

    extra: dict[str, Any] = {}
    if setup:
        extra["distill"] = _distill_demo(network, plugin, plan, setup, train, datasets["train"],
                                         metric, direction, json_mode, kw)
    if with_quantize:
        extra["quantize"] = _quantize_demo(network, train, datasets["train"], metric, json_mode, kw)

    picture = _preview_sheet(plugin, inference, workspace, network)
    untrained, trained = _best(baseline, metric, direction), _best(train, metric, direction)
    summary = {
        "network": network,
        "metric": metric, "direction": direction, "untrained": untrained, "trained": trained,
        f"{metric}_untrained": untrained, f"{metric}_trained": trained,
        "jobs": {"baseline_untrained": baseline.id, "train": train.id, "evaluate": evaluate.id,
                 "export": export.id, "inference": inference.id, "gen_trt_engine": engine.id if engine else None},
        "gen_trt_engine_skipped": why_not,
        "train_kpis": train.kpis,
        "evaluate_kpis": evaluate.kpis,
        "export_kpis": export.kpis,
        "checkpoint": evaluate.result.get("parent_artifact"),
        "onnx": next((a for a in export.artifacts() if a.endswith(".onnx")), None),
        "predictions_png": str(picture) if picture else None,
        **extra,
        "seconds": round(time.monotonic() - started, 1),
    }
    if json_mode:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary, plan["epochs"], workspace)
    return 0


def _print_summary(summary: dict[str, Any], epochs: int, workspace: Workspace) -> None:
    metric = summary["metric"]
    better = "higher" if summary["direction"] == "max" else "lower"
    print(f"\nDemo of {summary['network']} finished in {summary['seconds']} s")
    print(f"  {metric} untrained (same model, lr=1e-12): {summary['untrained']:.3f}")
    print(f"  {metric} trained ({epochs} epochs):        {summary['trained']:.3f}   ({better} is better)")
    print("  evaluate: " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(summary["evaluate_kpis"].items())
                                      if not isinstance(v, dict)))
    print(f"  best checkpoint: {summary['checkpoint']}")
    print(f"  ONNX model:      {summary['onnx']}")
    print(f"  predictions PNG: {summary['predictions_png']}")
    if "distill" in summary:
        d = summary["distill"]
        print(f"  distill (student {d['student']}, {d['epochs']} epochs each, same seed, "
              f"{d['val_images']} val images): {metric} "
              f"teacher {d['teacher']:.3f}, student alone {d['student_alone']:.3f}, distilled from the "
              f"trained model {d['student_distilled']:.3f} (margin {d['margin']:+.3f})")
    for mode, q in (summary.get("quantize") or {}).items():
        if "refused" in q:
            print(f"  quantize {mode}: refused here - {q['refused']}")
            continue
        print(f"  quantize {mode}: {q['float_size_mb']:.2f} MB -> {q['size_mb']:.2f} MB, {metric} "
              f"{_fmt(q['float_metric'])} -> {_fmt(q['metric'])}")
    print(f"  jobs: `tao-skills jobs` (workspace {workspace.root})")


def _distill_setup(network: str, plugin, plan: dict) -> dict[str, Any]:
    """The plugin's ``demo_distill`` setup; a clear error when it defines none."""
    setup = plugin.demo_distill(plan["size"])
    if setup is None:
        raise TaoSkillsError(f"tao-skills demo --with-distill: the {network} plugin defines no demo student "
                             "(NetworkPlugin.demo_distill); run the demo without --with-distill")
    return setup


def _distill_demo(network: str, plugin, plan: dict, setup: dict, teacher: Job, datasets: dict,
                  metric: str, direction: str, json_mode: bool, kw: dict) -> dict[str, Any]:
    """The plugin's smaller student trained alone and distilled from ``teacher`` (same data,
    epochs, seed and settings: only the distillation loss differs); returns the teacher's and
    both students' best metrics (on the demo's val split, enlarged to ``setup["n_val"]``), the
    margin and the job ids."""
    epochs = min(int(setup.get("epochs") or plan["epochs"]), plan["epochs"])
    # validated at half-way and at the end (checkpoint at the end): the val split is large
    student = {**plugin.demo_train_overrides(epochs, plan["size"]), "train.checkpoint_interval": epochs,
               "train.validation_interval": max(1, epochs // 2), **setup["student"]}
    alone = _run(network, "train", json_mode, datasets=datasets, spec_overrides=student, **kw)
    distilled = _run(network, "distill", json_mode, parent_job_id=teacher.id, datasets=datasets,
                     spec_overrides={**student, "distill.bindings": setup["bindings"]}, **kw)
    a, d = _best(alone, metric, direction), _best(distilled, metric, direction)
    return {"student": setup["student"], "bindings": setup["bindings"], "epochs": epochs,
            "val_images": plan["n_val"],
            "teacher": _best(teacher, metric, direction), "student_alone": a, "student_distilled": d,
            "margin": d - a if direction == "max" else a - d,
            "jobs": {"student_alone": alone.id, "distill": distilled.id}}


def _quantize_demo(network: str, parent: Job, datasets: dict, metric: str, json_mode: bool,
                   kw: dict) -> dict[str, Any]:
    """One quantize job per :data:`QUANTIZE_MODES` on ``parent``; a mode refused here (missing
    library) is reported with the reason instead; a job that fails stops the demo."""
    from .worker.errors import SpecError

    out: dict[str, Any] = {}
    for mode, spec in QUANTIZE_MODES.items():
        try:
            job = _run(network, "quantize", json_mode, parent_job_id=parent.id, datasets=datasets,
                       spec_overrides=spec, **kw)
        except SpecError as exc:  # refused at plan time (create_job): nothing ran
            _say(f"quantize {mode}: refused ({exc})", json_mode)
            out[mode] = {"refused": str(exc)}
            continue
        k = job.kpis
        out[mode] = {"job": job.id, "float_size_mb": k.get("float_model_size_mb"), "size_mb": k.get("model_size_mb"),
                     "float_metric": k.get(f"float_{metric}"), "metric": k.get(metric)}
    return out


def contact_sheet(images: list[str], out: Path, columns: int = 4) -> Path:
    """Tile the inference job's preview images (e.g. predicted boxes drawn) into one PNG."""
    from PIL import Image

    tiles = [Image.open(p).convert("RGB") for p in images]
    w = max(t.width for t in tiles)
    h = max(t.height for t in tiles)
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (min(columns, len(tiles)) * w, rows * h), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * w, (i // columns) * h))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out


def _best(job: Job, metric: str, direction: str) -> float:
    from .results import best_epoch

    best = best_epoch(job.progress.history, metric, direction) if job.progress else None
    if best is not None:
        return float(best[1])
    if metric not in job.kpis:
        raise TaoSkillsError(f"demo: train job {job.id} reported no {metric} (the skill's monitoring metric); "
                             f"see `tao-skills logs {job.id}`")
    return float(job.kpis[metric])


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
