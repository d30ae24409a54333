"""The report of one weights load: a status.json line with a message and a structured field.

Every time the engine copies weights into a model (``train.pretrained_model_path``,
``model.pretrained_backbone_path``...) it writes one RUNNING line (WARNING when tensors were
skipped) whose ``weights`` field holds ``spec_field``, ``uri`` (as given), ``local`` (the cached
copy), ``loaded``, ``file_tensors``, ``skipped`` (a list of ``reason`` / ``count`` / ``tensors``
examples), ``left_at_init``, ``model_tensors``, the ``layout`` it was read as and its
``notes`` (e.g. class heads reinitialised). The SDK collects these fields into the job's
result (``job.result["weights"]``).
"""

from __future__ import annotations

from typing import Any

from tao_sdk.worker.weights.layouts import COUNTER

__all__ = ["load_report", "report_load"]

_EXAMPLES = 5


def load_report(spec_field: str, uri: str, local: str, load: Any) -> dict[str, Any]:
    """The structured report (see the module docstring) of the
    :class:`tao_sdk.worker.weights.LoadReport` ``load``: its skipped tensors by reason (a shape
    mismatch of the class heads says why), BatchNorm counters left out (TAO's files keep them,
    transformers' modules have none), the layout it was read as and its notes."""
    skipped = []
    for reason, keys in load.skipped.items():
        if reason == COUNTER:
            continue
        if reason == "shape mismatch" and load.class_heads_differ:
            reason = ("shape mismatch: class head (the checkpoint was trained on another class count than "
                      "dataset.num_classes; these start from their initial values)")
        skipped.append({"reason": reason, "count": len(keys), "tensors": list(keys)[:_EXAMPLES]})
    return {"spec_field": spec_field, "uri": uri, "local": local, "layout": load.layout, "loaded": load.loaded,
            "file_tensors": load.total, "skipped": skipped, "left_at_init": len(load.initial),
            "model_tensors": load.loaded + len(load.initial), "notes": list(load.notes)}


def _message(r: dict[str, Any]) -> str:
    what = ("backbone tensors" if r["spec_field"].endswith(("backbone_path", "pretrained_backbone"))
            else "tensors")
    text = f"{r['spec_field']}: loaded {r['loaded']} of {r['file_tensors']} {what} from {r['uri']}"
    for s in r["skipped"]:
        example = f", e.g. {s['tensors'][0]}" if s["tensors"] else ""
        text += f"; skipped {s['count']} ({s['reason']}{example})"
    text += f"; {r['left_at_init']} of {r['model_tensors']} model tensors left at their initial values"
    return "; ".join([text, *r.get("notes", [])])


def report_load(ctx, report: dict[str, Any]) -> dict[str, Any]:
    """Write ``report`` as a status.json line (WARNING when tensors were skipped; credentials in a
    URI redacted); return it."""
    from tao_sdk.secrets import redact

    report = redact(report)
    verbosity = "WARNING" if report["skipped"] else "INFO"
    ctx.status.write("RUNNING", _message(report), verbosity=verbosity, weights=report)
    return report
