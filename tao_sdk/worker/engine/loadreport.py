"""The report of one weights load: a status.json line with a message and a structured field.

Every time the engine copies weights into a model (``train.pretrained_model_path``,
``model.pretrained_backbone_path``...) it writes one RUNNING line (WARNING when tensors were
skipped) whose ``weights`` field holds ``spec_field``, ``uri`` (as given), ``local`` (the cached
copy), ``loaded``, ``file_tensors``, ``skipped`` (a list of ``reason`` / ``count`` / ``tensors``
examples), ``left_at_init`` and ``model_tensors``. The SDK collects these fields into the job's
result (``job.result["weights"]``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["load_report", "report_load"]

_HEAD_RE = re.compile(r"class|score|logit|label", re.IGNORECASE)
_EXAMPLES = 5


def load_report(spec_field: str, uri: str, local: str, model_keys: list[str], loaded: int, file_tensors: int,
                mismatched: list[str], prefix: str = "") -> dict[str, Any]:
    """The structured report of a load (see the module docstring) from the loader's counts."""
    scope = [k for k in model_keys if not prefix or k.startswith(prefix)]
    skipped = []
    if mismatched:
        heads = [k for k in mismatched if _HEAD_RE.search(k)]
        reason = ("shape mismatch: class head (the checkpoint was trained on another class count than "
                  "dataset.num_classes; these start from their initial values)" if heads else "shape mismatch")
        skipped.append({"reason": reason, "count": len(mismatched), "tensors": mismatched[:_EXAMPLES]})
    unknown = file_tensors - loaded - len(mismatched)
    if unknown > 0:
        skipped.append({"reason": (f"outside the backbone ({prefix})" if prefix else "no tensor of that name in this model"),
                        "count": unknown, "tensors": []})
    return {"spec_field": spec_field, "uri": uri, "local": local, "loaded": loaded, "file_tensors": file_tensors,
            "skipped": skipped, "left_at_init": max(0, len(scope) - loaded), "model_tensors": len(scope)}


def _message(r: dict[str, Any]) -> str:
    what = "backbone tensors" if r["spec_field"].endswith("backbone_path") else "tensors"
    text = f"{r['spec_field']}: loaded {r['loaded']} of {r['file_tensors']} {what} from {r['uri']}"
    for s in r["skipped"]:
        example = f", e.g. {s['tensors'][0]}" if s["tensors"] else ""
        text += f"; skipped {s['count']} ({s['reason']}{example})"
    return text + f"; {r['left_at_init']} of {r['model_tensors']} model tensors left at their initial values"


def report_load(ctx, report: dict[str, Any]) -> dict[str, Any]:
    """Write ``report`` as a status.json line (WARNING when tensors were skipped; credentials in a
    URI redacted); return it."""
    from tao_sdk.secrets import redact

    report = redact(report)
    verbosity = "WARNING" if report["skipped"] else "INFO"
    ctx.status.write("RUNNING", _message(report), verbosity=verbosity, weights=report)
    return report
