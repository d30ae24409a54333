"""Write generated files, or (``--check``) say which are stale: shared by tools/gen_presets.py and
tools/gen_plugin.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sync(outputs: dict[str, str], *, check: bool, what: str, tool: str, extra: list[str] | None = None) -> int:
    """``outputs``: repository-relative path -> text. Write the stale ones and remove ``extra``
    (generated files no longer produced), or with ``check`` list them and return 1."""
    stale = sorted(p for p, text in outputs.items()
                   if not (ROOT / p).exists() or (ROOT / p).read_text(encoding="utf-8") != text)
    extra = sorted(extra or [])
    if check:
        if stale or extra:
            print(f"{what} are stale; run `python {tool}`: " + ", ".join(stale + extra))
            return 1
        print(f"{what} are up to date ({len(outputs)})")
        return 0
    for p in extra:
        (ROOT / p).unlink()
    for p in stale:
        (ROOT / p).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / p).write_text(outputs[p], encoding="utf-8")
    print(f"wrote {len(stale)} of {len(outputs)} {what}" + (f", removed {len(extra)}" if extra else ""))
    return 0
