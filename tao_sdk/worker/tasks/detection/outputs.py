"""Detection outputs: inference files (detections.json, KITTI labels, annotated images) and the
TensorRT detector adapter."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_detections", "TrtDetector"]

_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def write_detections(task_dir: Path, results, rel_outs: list[Path], names: dict[int, str],
                     conf: float, width: int) -> int:
    """Write ``images_annotated/`` (boxes drawn), ``labels/`` (KITTI lines) and
    ``detections.json`` for ``results`` (from :func:`metrics.predict`, one per
    ``rel_outs`` entry); return the number of detections with score >= ``conf``."""
    from PIL import ImageDraw

    from tao_sdk.worker.engine.runtime import write_json
    from tao_sdk.worker.tasks.detection.data import load_rgb

    out_img = task_dir / "images_annotated"
    out_lbl = task_dir / "labels"
    detections = []
    count = 0
    for (meta, scores, labels, boxes), rel_out in zip(results, rel_outs):
        img = load_rgb(Path(meta["path"]))
        draw = ImageDraw.Draw(img)
        lines = []
        dets = []
        for s, lab, b in zip(scores, labels, boxes):
            if s < conf:
                continue
            name = names.get(int(lab), str(int(lab)))
            color = _PALETTE[int(lab) % len(_PALETTE)]
            x0, y0, x1, y1 = (float(v) for v in b)
            draw.rectangle([x0, y0, x1, y1], outline=color, width=width)
            draw.text((x0 + 2, max(0.0, y0 - 11)), f"{name} {s:.2f}", fill=color)
            lines.append(f"{name.replace(' ', '_')} 0.00 0 0.00 {x0:.2f} {y0:.2f} {x1:.2f} "
                         f"{y1:.2f} 0.00 0.00 0.00 0.00 0.00 0.00 0.00 {s:.3f}")
            dets.append({"bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2),
                                  round(y1 - y0, 2)],
                         "score": round(float(s), 4), "category_id": int(lab),
                         "category_name": name})
        target = out_img / rel_out
        target.parent.mkdir(parents=True, exist_ok=True)
        img.save(target.with_suffix(".jpg"), quality=90)
        lbl = (out_lbl / rel_out).with_suffix(".txt")
        lbl.parent.mkdir(parents=True, exist_ok=True)
        lbl.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        detections.append({"file_name": rel_out.as_posix(), "width": meta["orig_size"][1],
                           "height": meta["orig_size"][0], "detections": dets})
        count += len(dets)
    write_json(task_dir / "detections.json", {
        "conf_threshold": conf, "class_names": {str(k): v for k, v in names.items()},
        "images": detections,
    })
    return count


class TrtDetector:
    """A TensorRT engine (``pred_logits`` / ``pred_boxes`` outputs) used like the PyTorch
    detector: ``detector(pixel_values=...)`` returns an object with ``logits`` and
    ``pred_boxes`` (CPU tensors) and ``loss=None``."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.max_batch = runner.max_batch
        self.input_hw = runner.input_hw

    def eval(self) -> "TrtDetector":
        """No-op (API parity with torch modules)."""
        return self

    def to(self, _device) -> "TrtDetector":
        """No-op (the engine lives on the GPU)."""
        return self

    def __call__(self, pixel_values, pixel_mask=None, labels=None):
        """Run the engine on a batch of preprocessed images."""
        from types import SimpleNamespace

        out = self.runner.run([pixel_values])
        return SimpleNamespace(logits=out["pred_logits"], pred_boxes=out["pred_boxes"],
                               loss=None, loss_dict=None)
