"""Detection task: prediction post-processing and COCO evaluation (pycocotools)."""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np

__all__ = ["postprocess", "predict", "coco_map", "merge_coco"]


def postprocess(logits, pred_boxes, orig_sizes, num_select: int):
    """Top-``num_select`` detections per image from sigmoid class scores.

    Args:
        logits: ``[B, Q, C]`` class logits.
        pred_boxes: ``[B, Q, 4]`` normalised ``cx, cy, w, h`` (relative to the unpadded image).
        orig_sizes: ``[(h, w), ...]`` original image sizes.
        num_select: detections kept per image (capped at ``Q * C``).

    Returns a list of ``(scores [K], labels [K], boxes [K, 4] xyxy in original pixels)`` numpy
    arrays, highest score first. As TAO's ``PostProcess``: label = class index (the dataset's
    category id), boxes scaled to the image and not clipped (TAO evaluates them so).
    """
    import torch

    prob = logits.float().sigmoid()
    bsz, nq, ncls = prob.shape
    k = min(int(num_select), nq * ncls)
    scores, idx = prob.reshape(bsz, -1).topk(k, dim=1)
    labels = idx % ncls
    query = idx // ncls
    boxes = pred_boxes.float().gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    out = []
    for i, (oh, ow) in enumerate(orig_sizes):
        scale = torch.tensor([ow, oh, ow, oh], dtype=xyxy.dtype)
        out.append((scores[i].numpy(), labels[i].numpy(), (xyxy[i] * scale).numpy()))
    return out


def predict(plugin, model, loader, arch: dict[str, Any], device, *, with_loss: bool = False):
    """Run ``model`` (through ``plugin.forward``) in eval mode over ``loader``.

    Returns ``(results, mean_loss)`` where ``results`` is a list of
    ``(meta, scores, labels, boxes_xyxy)`` per image and ``mean_loss`` is the mean of the
    plugin's loss over the batches when ``with_loss`` (else ``None``).
    """
    import torch

    model.eval()
    results = []
    losses = []
    with torch.no_grad():
        for batch in loader:
            out = plugin.forward(model, batch, device, with_labels=with_loss)
            if with_loss and out.loss is not None:
                losses.append(float(plugin.loss(out, arch)))
            dets = postprocess(out.logits.cpu(), out.pred_boxes.cpu(),
                               [m["orig_size"] for m in batch["metas"]], arch["num_select"])
            for meta, (s, lab, b) in zip(batch["metas"], dets):
                results.append((meta, s, lab, b))
    mean_loss = float(np.mean(losses)) if losses else None
    return results, mean_loss


def merge_coco(sources: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[int, int]]]:
    """Merge several COCO dicts into one (fresh image / annotation ids).

    Returns ``(merged, image_id_maps)`` where ``image_id_maps[i]`` maps source *i*'s image ids
    to the merged ids. Categories are the union by id.
    """
    if len(sources) == 1:
        return sources[0], [{img["id"]: img["id"] for img in sources[0]["images"]}]
    merged: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    seen_cats: set[int] = set()
    maps = []
    next_img = 1
    next_ann = 1
    for src in sources:
        id_map = {}
        for img in src["images"]:
            new = dict(img, id=next_img)
            id_map[img["id"]] = next_img
            next_img += 1
            merged["images"].append(new)
        for ann in src.get("annotations", []):
            merged["annotations"].append(dict(ann, id=next_ann, image_id=id_map[ann["image_id"]]))
            next_ann += 1
        for cat in src.get("categories", []):
            if cat["id"] not in seen_cats:
                seen_cats.add(cat["id"])
                merged["categories"].append(cat)
        maps.append(id_map)
    return merged, maps


def coco_map(gt: dict[str, Any], results, label_to_category: dict[int, int],
             class_ids: list[int] | None = None, image_id_map: dict | None = None
             ) -> dict[str, Any]:
    """COCO box mAP of ``results`` (from :func:`predict`) against the COCO dict ``gt``.

    Returns ``{"mAP": float, "mAP50": float, "mAP75": float, "per_class": {category id: AP},
    "pr": {"recall": [101 recall thresholds], "precision": {category id: [precision at IoU
    0.5, all areas, 100 detections]}} or None}`` (AP values in 0..1; -1 entries of
    pycocotools, i.e. classes without ground truth, are left out of ``per_class`` and ``pr``). ``class_ids`` restricts evaluation to those category ids
    (``dataset.eval_class_ids``).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = copy.deepcopy(gt)
    for i, ann in enumerate(gt.get("annotations", [])):
        ann.setdefault("id", i + 1)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    gt.setdefault("categories", [])
    dets = []
    for meta, scores, labels, boxes in results:
        image_id = meta["image_id"] if image_id_map is None else image_id_map[meta["image_id"]]
        for s, lab, b in zip(scores, labels, boxes):
            cat = label_to_category.get(int(lab))
            if cat is None:
                continue
            dets.append({"image_id": image_id, "category_id": int(cat),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                  float(b[3] - b[1])], "score": float(s)})
    empty = {"mAP": 0.0, "mAP50": 0.0, "mAP75": 0.0, "per_class": {}, "pr": None}
    if not gt.get("annotations"):
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not dets:  # as pycocotools: AP and precision 0 for every category with ground truth
            return _no_detections(gt, class_ids)
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if class_ids:
            ev.params.catIds = [int(c) for c in class_ids]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats
    per_class, curves = {}, {}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        if (p[0] > -1).any():
            curves[int(cat)] = [max(0.0, float(v)) for v in p[0]]  # IoU 0.5
        p = p[p > -1]
        if p.size:
            per_class[int(cat)] = float(np.mean(p))
    return {"mAP": max(0.0, float(stats[0])), "mAP50": max(0.0, float(stats[1])),
            "mAP75": max(0.0, float(stats[2])), "per_class": per_class,
            "pr": {"recall": [float(r) for r in ev.params.recThrs], "precision": curves}}


def _no_detections(gt: dict[str, Any], class_ids: list[int] | None) -> dict[str, Any]:
    """:func:`coco_map` of an empty detection list (pycocotools cannot load one): 0 for
    mAP and for each evaluated category with (non-crowd) ground truth, zero PR curves."""
    cats = {int(a["category_id"]) for a in gt["annotations"] if not a.get("iscrowd")}
    if class_ids:
        cats &= {int(c) for c in class_ids}
    recall = [float(r) for r in np.linspace(0.0, 1.0, 101)]
    return {"mAP": 0.0, "mAP50": 0.0, "mAP75": 0.0, "per_class": {c: 0.0 for c in sorted(cats)},
            "pr": {"recall": recall, "precision": {c: [0.0] * len(recall) for c in sorted(cats)}}}
