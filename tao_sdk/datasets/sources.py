"""The datasets an action reads, as the final spec names them, grouped per dataset.

Each row of the skill's SKILL.md dataset table says which spec key holds which file (the
``Files`` cell: ``image_dir: images.tar.gz, json_file: annotations.json``); the spec says where
that file is. A :class:`Source` gathers the files of one dataset (one role, one entry of a list)
under the table's file names, so a validator asks for ``annotations.json`` whatever the user's
file is called or wherever it lies (a spec file may point ``json_file`` anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from ..specfile import value_at
from ..skillmd import ROOT_ITSELF, FileByFormat, FileMapping, FilePath, FileSpec, FormatPlaceholder


@dataclass
class Source:
    """One dataset as the action reads it.

    Attributes:
        role: the table's dataset role (``train_datasets``, ``eval_dataset``...).
        index: which dataset of the role (the entry of a list-valued spec key).
        files: the table's file name (``annotations.json``, ``.`` for the root) -> URIs.
        keys: the table's file name -> the dotted spec key (with ``[i]``) it came from.
        fields: literal values of the entry that are not files (``dataset_name``).
    """

    role: str
    index: int
    files: dict[str, list[str]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)

    def uri(self, name: str) -> str | None:
        """The first URI of table file ``name``, or None."""
        uris = self.files.get(name) or []
        return uris[0] if uris else None

    def key(self, name: str) -> str | None:
        """The spec key of table file ``name``."""
        return self.keys.get(name)


def _set(value: Any) -> bool:
    return value not in (None, "", "???", [])


def _files(spec: FileSpec, value: Any, key: str) -> Iterator[tuple[str, str, str]]:
    """``(table file name or field name, value, spec key)`` for one entry of a data-source key."""
    if isinstance(spec, FormatPlaceholder):
        if _set(value):
            yield "<dataset_format>", str(value), key
    elif isinstance(spec, FilePath):
        for i, uri in enumerate(value if isinstance(value, list) else [value]):
            if _set(uri):
                yield spec.name, str(uri), f"{key}[{i}]" if isinstance(value, list) else key
    elif isinstance(spec, FileByFormat):
        if _set(value):
            options = [p.name for _, p in spec.by_format] + ([spec.default.name] if spec.default else [])
            base = str(value).rstrip("/").rsplit("/", 1)[-1]
            yield (base if base in options else options[-1]), str(value), key
    elif isinstance(spec, FileMapping) and isinstance(value, Mapping):
        for sub, sub_spec in spec.items:
            yield from _files(sub_spec, value.get(sub), f"{key}.{sub}")


def _entry_source(sources: list[Source], role: str, index: int, files: dict[str, list[str]]) -> Source:
    """The source of (role, index) whose files agree with ``files`` (a new one if none does)."""
    for src in sources:
        if src.role == role and src.index == index and all(
                src.files.get(name, uris) == uris for name, uris in files.items()):
            return src
    src = Source(role, index)
    sources.append(src)
    return src


def action_sources(skill: Any, action: str, spec: Mapping[str, Any]) -> list[Source]:
    """The :class:`Source` list of ``action`` from the skill's table and the final ``spec``."""
    out: list[Source] = []
    for req in skill.dataset_requirements(action):
        value = value_at(spec, req.spec_key)
        entries = value if (req.multiple and isinstance(value, list)) else [value]
        for index, entry in enumerate(entries):
            key = f"{req.spec_key}[{index}]" if req.multiple else req.spec_key
            found = list(_files(req.files, entry, key))
            files: dict[str, list[str]] = {}
            for name, uri, _ in found:
                if name != "<dataset_format>":
                    files.setdefault(name, []).append(uri)
            src = _entry_source(out, req.source, index, files)
            for name, uri, where in found:
                if name == "<dataset_format>":
                    src.fields["dataset_name"] = uri
                    continue
                src.files[name] = files[name]
                src.keys.setdefault(name, where)
    return out


__all__ = ["ROOT_ITSELF", "Source", "action_sources"]
