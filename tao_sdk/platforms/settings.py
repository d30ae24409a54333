"""Platform settings from three layers, the same for every platform that has any.

Lowest to highest precedence: ``<workspace>/platforms/<name>.yaml`` (or the file named by
``TAO_<NAME>_CONFIG``), ``TAO_<NAME>_<KEY>`` environment variables, keyword options of
``get_platform(name, **options)``. Each platform declares its keys (name -> meaning), which of them
are integers and which are lists (a list may also be given as one string: ``:``-separated paths or a
shell-quoted argument list).
"""

from __future__ import annotations

import difflib
import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from tao_sdk.errors import PlatformError
from tao_sdk.platforms.base import Platform

__all__ = ["ConfiguredPlatform", "config_file", "load_settings"]


def config_file(platform: str) -> Path:
    """The settings file of ``platform``: ``$TAO_<NAME>_CONFIG`` or ``<workspace>/platforms/<name>.yaml``."""
    named = os.environ.get(f"TAO_{platform.upper()}_CONFIG")
    if named:
        return Path(named).expanduser()
    from tao_sdk.workspace import default_workspace

    return default_workspace().root / "platforms" / f"{platform}.yaml"


def _check_keys(platform: str, keys: Any, known: dict[str, str], where: str) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, 1)
            raise PlatformError(
                f"{where}: unknown {platform} setting {key!r}"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + f" Settings: {', '.join(known)}"
            )


def _read_file(platform: str, path: Path, known: dict[str, str]) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PlatformError(f"cannot read the {platform} config {path}: {exc}; fix the YAML") from exc
    if not isinstance(data, dict):
        raise PlatformError(f"{path}: must be a mapping of settings ({', '.join(known)})")
    _check_keys(platform, data, known, str(path))
    return data


def load_settings(platform: str, known: dict[str, str], options: dict[str, Any], *,
                  ints: set[str] = frozenset(), paths: set[str] = frozenset(),
                  args: set[str] = frozenset()) -> dict[str, Any]:
    """The settings of ``platform``: its file, then ``TAO_<NAME>_<KEY>`` variables, then ``options``.

    ``ints``: keys converted to int; ``paths``: list keys given as ``a:b`` strings; ``args``: list
    keys given as shell-quoted strings. Raises PlatformError for an unknown key (with a suggestion),
    an unreadable file or a non-integer value of an integer key.
    """
    path = config_file(platform)
    cfg = _read_file(platform, path, known)
    prefix = f"TAO_{platform.upper()}_"
    for key in known:
        value = os.environ.get(prefix + key.upper())
        if value not in (None, ""):
            cfg[key] = value
    _check_keys(platform, options, known, f"get_platform({platform!r})")
    cfg.update({k: v for k, v in options.items() if v is not None})
    for key in ints & set(cfg):
        try:
            cfg[key] = int(cfg[key])
        except (TypeError, ValueError):
            raise PlatformError(f"{platform} setting {key}={cfg[key]!r} must be an integer "
                                f"({prefix}{key.upper()} or {path})") from None
    for key in paths & set(cfg):
        if isinstance(cfg[key], str):
            cfg[key] = [p for p in cfg[key].split(":") if p]
    for key in args & set(cfg):
        if isinstance(cfg[key], str):
            cfg[key] = shlex.split(cfg[key])
    return cfg


class ConfiguredPlatform(Platform):
    """A platform built from settings (``get_platform(name, **settings)``): keeps them, and loads
    the effective configuration (file < environment < settings) on first use of :attr:`config`."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self._cfg: dict[str, Any] | None = None

    def _load_config(self) -> dict[str, Any]:
        """The effective settings of this platform (subclasses: their module's ``load_config``)."""
        raise NotImplementedError

    @property
    def config(self) -> dict[str, Any]:
        """The effective settings (loaded on first use)."""
        if self._cfg is None:
            self._cfg = self._load_config()
        return self._cfg
