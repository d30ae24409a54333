"""TensorRT engine builds (``gen_trt_engine``), TAO Deploy style.

Needs an NVIDIA GPU and the ``tensorrt`` Python package (the ``gpu`` extra). Without them
:func:`require_tensorrt` fails at once with a message that says where to run the action.

Spec fields (``gen_trt_engine.*``): ``onnx_file`` (from the export action), ``trt_engine``
(output), ``timing_cache``, ``verbose``, ``tensorrt.data_type`` (FP32 / FP16 / INT8),
``tensorrt.workspace_size`` (MB), ``tensorrt.min/opt/max_batch_size`` (ignored when the ONNX
input has a fixed batch, which overrides the dynamic profile), ``tensorrt.calibration``
(``cal_image_dir`` list, ``cal_cache_file``, ``cal_batch_size``, ``cal_batches``; INT8 needs at
least ``cal_batches x cal_batch_size`` images).
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from pathlib import Path
from typing import Any

from tao_sdk.extras import install_command
from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError, WorkerError

__all__ = ["nvidia_gpu_visible", "require_tensorrt", "build_engine", "onnx_preprocessing",
           "TrtRunner"]

_T = "gen_trt_engine"


def nvidia_gpu_visible() -> bool:
    """True when an NVIDIA GPU device is visible (``/dev/nvidia<N>`` or ``nvidia-smi -L``)."""
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    smi = shutil.which("nvidia-smi")
    if smi:
        import subprocess

        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return False
        return out.returncode == 0 and "GPU" in out.stdout
    return False


def require_tensorrt():
    """Return the ``tensorrt`` module; raise :class:`WorkerError` at once when there is no
    NVIDIA GPU or ``import tensorrt`` fails."""
    if not nvidia_gpu_visible():
        raise WorkerError(
            "TensorRT needs an NVIDIA GPU: none is visible on this machine (no /dev/nvidia* "
            "device, no nvidia-smi). Run gen_trt_engine on a GPU node (a platform/queue with "
            "NVIDIA GPUs), or deploy the ONNX file of the export action with onnxruntime."
        )
    try:
        import tensorrt  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken CUDA install
        raise WorkerError(
            f"TensorRT needs an NVIDIA GPU and the tensorrt package: a GPU is visible but "
            f"`import tensorrt` failed ({type(exc).__name__}: {exc}); install it on the GPU node "
            f"({install_command('gpu')}, i.e. tensorrt>=10)"
        ) from None
    return tensorrt


def onnx_preprocessing(onnx_path: Path) -> dict[str, Any]:
    """Read the preprocessing the export action stored in the ONNX metadata
    (``tao_worker.mean`` / ``tao_worker.std``); ``{}`` when absent."""
    import json

    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    out: dict[str, Any] = {}
    for key in ("mean", "std"):
        if f"tao_worker.{key}" in props:
            out[key] = json.loads(props[f"tao_worker.{key}"])
    return out


class _CalibrationData:
    """Batches of preprocessed calibration images (numpy, NCHW float32)."""

    def __init__(self, paths: list[Path], batch: int, batches: int, hw: tuple[int, int],
                 mean: list[float], std: list[float]) -> None:
        self.paths = paths[: batch * batches]
        self.batch = batch
        self.hw = hw
        self.mean = mean
        self.std = std
        self.index = 0

    def next(self):
        """The next batch (NCHW float32), or None when the calibration set is used up."""
        import numpy as np
        from PIL import Image

        if self.index + self.batch > len(self.paths):
            return None
        arrays = []
        for p in self.paths[self.index: self.index + self.batch]:
            with Image.open(p) as img:
                im = img.convert("RGB").resize((self.hw[1], self.hw[0]),
                                               Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
            a = (a - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
            arrays.append(a.transpose(2, 0, 1))
        self.index += self.batch
        return np.ascontiguousarray(np.stack(arrays))


def _calibrator(trt, data: _CalibrationData, cache_file: Path | None):
    """An ``IInt8EntropyCalibrator2`` fed from ``data`` (device buffers via torch CUDA)."""
    torch = _cuda_torch("INT8 calibration needs PyTorch with CUDA on the GPU node to hold calibration "
                        "batches in GPU memory", f", or use {_T}.tensorrt.data_type FP16")

    class Calibrator(trt.IInt8EntropyCalibrator2):
        """Entropy calibrator over the staged calibration images."""

        def __init__(self) -> None:
            super().__init__()
            self.device_batch = None

        def get_batch_size(self) -> int:
            """Calibration batch size."""
            return data.batch

        def get_batch(self, names):
            """Device pointers of the next batch, or None at the end."""
            batch = data.next()
            if batch is None:
                return None
            self.device_batch = torch.from_numpy(batch).cuda()
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self):
            """A previous calibration cache, to skip calibration."""
            if cache_file is not None and cache_file.exists():
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            """Save the calibration cache (``cal_cache_file``)."""
            if cache_file is not None:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                cache_file.write_bytes(bytes(cache))

    return Calibrator()


def _hw_profile(spec: dict, shape: tuple) -> tuple[tuple[int, int, int], ...] | None:
    """``((min, opt, max) height, (min, opt, max) width)`` for an ONNX input whose height /
    width are dynamic (``-1``), from ``gen_trt_engine.{min,opt,max}_{height,width}``; ``None``
    when they are fixed. Raises :class:`SpecError` when a dynamic size has no profile."""
    if len(shape) != 4 or (shape[2] != -1 and shape[3] != -1):
        return None
    out = []
    for dim in ("height", "width"):
        vals = [S.get(spec, f"{_T}.{k}_{dim}") for k in ("min", "opt", "max")]
        if any(v in (None, "") for v in vals):
            raise SpecError(
                f"the ONNX input has a dynamic {dim}: set {_T}.min_{dim}, opt_{dim} and "
                f"max_{dim} (e.g. 320 / 480 / 1024 for the height), or export with "
                "export.dynamic_hw false")
        lo, mid, hi = (int(v) for v in vals)
        if not 1 <= lo <= mid <= hi:
            raise SpecError(f"{_T}.min_{dim} <= opt_{dim} <= max_{dim} must hold "
                            f"(got {lo} / {mid} / {hi})")
        out.append((lo, mid, hi))
    return tuple(out)


def _cuda_torch(need: str, fix: str):
    """``torch`` when it has CUDA here; else WorkerError saying ``need`` (what needs GPU buffers)
    and ``fix`` (what to do instead)."""
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False")
    except Exception as exc:  # noqa: BLE001
        raise WorkerError(f"{need} ({exc}); install a CUDA build of torch there{fix}") from None
    return torch


def build_engine(ctx) -> str:
    """Build the engine described by the spec's ``gen_trt_engine`` section; return the SUCCESS
    message. Call :func:`require_tensorrt` first."""
    from tao_sdk.worker.staging import fetch_file

    trt = require_tensorrt()
    spec = ctx.spec
    onnx_uri = S.require(spec, f"{_T}.onnx_file", "the .onnx file written by the export action")
    engine_uri = S.require(spec, f"{_T}.trt_engine", "the engine file to write "
                           "(e.g. <results_dir>/gen_trt_engine/model.engine)")
    onnx_path = fetch_file(str(onnx_uri), f"{_T}.onnx_file")
    engine_path = ctx.output_path(str(engine_uri), f"{_T}.trt_engine")
    dtype = str(S.get(spec, f"{_T}.tensorrt.data_type", "FP32")).upper()
    if dtype not in ("FP32", "FP16", "BF16", "INT8"):
        raise SpecError(f"{_T}.tensorrt.data_type={dtype!r}: use FP32, FP16, BF16 or INT8")
    workspace_mb = int(S.get(spec, f"{_T}.tensorrt.workspace_size", 1024))
    batches = _batch_sizes(spec)
    level = trt.Logger.VERBOSE if bool(S.get(spec, f"{_T}.verbose", False)) else trt.Logger.WARNING
    logger = trt.Logger(level)
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(trt, builder, logger, onnx_path, onnx_uri)  # the parser outlives the build
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    notes: list[str] = []
    batch_desc = _set_profiles(builder, config, network, spec, batches, notes)
    _set_half_precision(trt, builder, config, dtype, notes)
    cal_cache = _set_int8(ctx, trt, builder, config, network, onnx_path, notes) if dtype == "INT8" else None
    cache_path = _timing_cache(ctx, config)
    ctx.status.running(f"building TensorRT {trt.__version__} engine: {dtype}, workspace "
                       f"{workspace_mb} MB, {batch_desc}"
                       + (". " + "; ".join(notes) if notes else ""))
    t0 = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise WorkerError(
            f"TensorRT could not build an engine from {onnx_uri} ({dtype}); see "
            f"{ctx.task_uri}/log.txt (set {_T}.verbose true for details), or try "
            f"{_T}.tensorrt.data_type FP32 / a larger workspace_size"
        )
    _write_engine(engine_path, serialized)
    if cache_path is not None:
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    seconds = time.monotonic() - t0
    return (f"TensorRT engine built successfully: {engine_uri} ({dtype}, {batch_desc}, "
            f"{engine_path.stat().st_size / 1e6:.1f} MB, {seconds:.0f} s)"
            + (f"; calibration cache {cal_cache.name}" if cal_cache is not None else "") + ".")


def _batch_sizes(spec: dict) -> tuple[int, int, int]:
    """``gen_trt_engine.tensorrt.{min,opt,max}_batch_size`` (SpecError unless 1 <= min <= opt <= max)."""
    bmin, bopt, bmax = (int(S.get(spec, f"{_T}.tensorrt.{k}_batch_size", 1)) for k in ("min", "opt", "max"))
    if not 1 <= bmin <= bopt <= bmax:
        raise SpecError(f"{_T}.tensorrt batch sizes must satisfy 1 <= min_batch_size ({bmin}) "
                        f"<= opt_batch_size ({bopt}) <= max_batch_size ({bmax})")
    return bmin, bopt, bmax


def _parse_onnx(trt, builder, logger, onnx_path: Path, onnx_uri: Any):
    """(network, parser) of the ONNX file (explicit batch; the network refers to the parser's
    weights, so keep the parser until the build ends); WorkerError naming the parser's errors."""
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(
            trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise WorkerError(f"{_T}.onnx_file {onnx_uri}: TensorRT cannot parse it ({errors}); "
                          "re-export it with export.opset_version 17")
    return network, parser


def _set_profiles(builder, config, network, spec: dict, batches: tuple[int, int, int], notes: list[str]) -> str:
    """Add the optimization profile a dynamic batch / height / width needs; return the batch
    description of the status line (a fixed batch that overrides the spec's gets a note)."""
    bmin, bopt, bmax = batches
    shape = tuple(network.get_input(0).shape)
    hw = _hw_profile(spec, shape)
    if shape[0] != -1 and hw is None:
        if (bmin, bopt, bmax) != (shape[0],) * 3:
            notes.append(f"the ONNX input has a fixed batch {shape[0]}, which overrides "
                         f"min/opt/max_batch_size {bmin}/{bopt}/{bmax}")
        return f"fixed batch {shape[0]}"
    # One profile for every input (a stereo model has two): batch and, for an ONNX
    # exported with dynamic height / width, gen_trt_engine.{min,opt,max}_{height,width}.
    profile = builder.create_optimization_profile()
    for tensor in (network.get_input(i) for i in range(network.num_inputs)):
        dims = tuple(tensor.shape)
        mins, opts, maxs = list(dims), list(dims), list(dims)
        if dims[0] == -1:
            mins[0], opts[0], maxs[0] = bmin, bopt, bmax
        if hw is not None and len(dims) == 4:
            for axis, (lo, mid, hi) in zip((2, 3), hw):
                mins[axis], opts[axis], maxs[axis] = lo, mid, hi
        profile.set_shape(tensor.name, tuple(mins), tuple(opts), tuple(maxs))
    config.add_optimization_profile(profile)
    batch_desc = f"dynamic batch {bmin}/{bopt}/{bmax}" if shape[0] == -1 else f"fixed batch {shape[0]}"
    if hw is not None:
        batch_desc += f", height {hw[0][0]}/{hw[0][1]}/{hw[0][2]}, width {hw[1][0]}/{hw[1][1]}/{hw[1][2]}"
    return batch_desc


def _set_half_precision(trt, builder, config, dtype: str, notes: list[str]) -> None:
    """FP16 / BF16 builder flags (BF16 needs TensorRT 9+: SpecError naming the fix)."""
    if dtype == "FP16":
        if not getattr(builder, "platform_has_fast_fp16", True):
            notes.append("this GPU has no fast FP16; the engine may run slower than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
    if dtype == "BF16":
        if not hasattr(trt.BuilderFlag, "BF16"):
            raise SpecError(f"{_T}.tensorrt.data_type=BF16 needs TensorRT 9 or newer (this is "
                            f"{trt.__version__}); use FP16 or FP32")
        config.set_flag(trt.BuilderFlag.BF16)


def _set_int8(ctx, trt, builder, config, network, onnx_path: Path, notes: list[str]) -> Path:
    """INT8: stage the calibration images, set the calibrator (and its profile for a dynamic
    batch); return the calibration cache path. SpecError when there are too few images."""
    from tao_sdk.worker.staging import list_images, stage_image_dir

    spec, cal = ctx.spec, f"{_T}.tensorrt.calibration"
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    cal_batch = int(S.get(spec, f"{cal}.cal_batch_size", 1))
    cal_batches = int(S.get(spec, f"{cal}.cal_batches", 1))
    cache_uri = S.get(spec, f"{cal}.cal_cache_file")
    cal_cache = ctx.output_path(str(cache_uri), f"{cal}.cal_cache_file") if cache_uri \
        else ctx.task_dir / "cal.bin"
    dirs = S.get(spec, f"{cal}.cal_image_dir", [])
    dirs = dirs if isinstance(dirs, list) else [dirs]
    images: list[Path] = []
    for i, d in enumerate(dirs):
        images += list_images(stage_image_dir(str(d), f"{cal}.cal_image_dir[{i}]"))
    needed = cal_batch * cal_batches
    if len(images) < needed and not cal_cache.exists():
        raise SpecError(
            f"{cal}: INT8 calibration needs cal_batches x cal_batch_size = {needed} images, "
            f"found {len(images)} in cal_image_dir; add images or lower cal_batches"
        )
    prep = onnx_preprocessing(onnx_path)
    if not prep:
        notes.append("the ONNX file carries no preprocessing metadata; calibration images "
                     "are scaled to 0..1 without mean/std normalisation")
    data = _CalibrationData(images, cal_batch, cal_batches, (int(shape[2]), int(shape[3])),
                            prep.get("mean", [0.0, 0.0, 0.0]), prep.get("std", [1.0] * 3))
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = _calibrator(trt, data, cal_cache)
    if shape[0] == -1:
        cal_profile = builder.create_optimization_profile()
        rest = tuple(shape[1:])
        cal_profile.set_shape(inp.name, (cal_batch, *rest), (cal_batch, *rest), (cal_batch, *rest))
        config.set_calibration_profile(cal_profile)
    return cal_cache


def _timing_cache(ctx, config) -> Path | None:
    """Load ``gen_trt_engine.timing_cache`` into the builder config; its path (to save after the
    build), or None when not set."""
    timing_uri = S.get(ctx.spec, f"{_T}.timing_cache")
    if not timing_uri:
        return None
    cache_path = ctx.output_path(str(timing_uri), f"{_T}.timing_cache")
    blob = cache_path.read_bytes() if cache_path.exists() else b""
    config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=True)
    return cache_path


def _write_engine(engine_path: Path, serialized) -> None:
    """Write the serialized engine atomically (a temporary name, then rename), disk space guarded."""
    from tao_sdk.diskspace import guarded_write

    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(".tao-tmp-" + engine_path.name)
    with guarded_write(tmp, f"TensorRT engine {engine_path.name}", needed=serialized.nbytes):
        with open(tmp, "wb") as fh:
            fh.write(serialized)
        os.replace(tmp, engine_path)


class TrtRunner:
    """A TensorRT engine (from ``gen_trt_engine``) run on PyTorch CUDA buffers:
    :meth:`run` takes the input tensors (in the engine's input order) and returns the outputs
    by name (CPU float tensors). The task wraps it so the plugin can call it like its model
    (:meth:`tao_sdk.worker.tasks.Task.trt_model`).

    Device buffers are CUDA tensors of PyTorch, so the GPU node needs a CUDA build of torch.
    """

    def __init__(self, engine_path: Path, what: str, outputs: tuple[str, ...] = ()) -> None:
        trt = require_tensorrt()
        torch = _cuda_torch(f"{what}: running a TensorRT engine needs PyTorch with CUDA on the GPU node for "
                            "its buffers", "")
        self._torch = torch
        self._trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise WorkerError(
                f"{what}: {engine_path} is not a TensorRT engine for this GPU / TensorRT version "
                "(engines are not portable); rebuild it with gen_trt_engine on this node"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names
                       if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if not self.inputs or not set(outputs) <= set(self.outputs):
            raise WorkerError(
                f"{what}: {engine_path} has inputs {self.inputs} and outputs {self.outputs}; "
                f"expected outputs {', '.join(outputs)} (an engine built from this network's "
                "export)"
            )
        shape = tuple(self.engine.get_tensor_shape(self.inputs[0]))
        self.input_hw = (int(shape[2]), int(shape[3]))
        if shape[0] == -1:
            _min, _opt, max_shape = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
            self.max_batch = int(max_shape[0])
        else:
            self.max_batch = int(shape[0])
        self.fixed_batch = None if shape[0] == -1 else int(shape[0])

    def run(self, inputs: list) -> dict:
        """Run the engine on one batch (one tensor per engine input, same batch); pads to the
        fixed engine batch when there is one; returns ``{output name: CPU float tensor}``."""
        import numpy as np

        torch = self._torch
        trt = self._trt
        n = inputs[0].shape[0]
        staged = []  # device copies stay alive until the engine has run
        for name, tensor in zip(self.inputs, inputs):
            x = tensor.float()
            if self.fixed_batch is not None and n < self.fixed_batch:
                x = torch.cat([x, x.new_zeros(self.fixed_batch - n, *x.shape[1:])])
            x = x.cuda().contiguous()
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, int(x.data_ptr()))
            staged.append(x)
        buffers = {}
        for out in self.outputs:
            shape = tuple(self.context.get_tensor_shape(out))
            dtype = torch.from_numpy(
                np.zeros(1, dtype=trt.nptype(self.engine.get_tensor_dtype(out)))).dtype
            buffers[out] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(out, int(buffers[out].data_ptr()))
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise WorkerError("TensorRT execution failed; see log.txt")
        stream.synchronize()
        return {name: buf[:n].float().cpu() for name, buf in buffers.items()}
