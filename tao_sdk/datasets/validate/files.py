"""Every file of the table that no format validator reads: it must exist, and an image archive
must be a readable tar holding at least one image."""

from __future__ import annotations

from typing import Any

from ..problems import Problem
from ..reader import is_archive, is_image
from ..sources import Source
from .base import Context, missing, problem, scan


class Files:
    """The presence check (applied by :func:`tao_sdk.datasets.validate.run` to unclaimed files)."""

    name = "files"

    def claims(self, ctx: Context, source: Source) -> tuple[str, ...]:
        """Every file of the source."""
        return tuple(source.files)

    def settings(self, ctx: Context, source: Source) -> dict[str, Any]:
        """None: presence depends on no spec value."""
        return {}

    def validate(self, ctx: Context, source: Source) -> list[Problem]:
        """A problem per missing file, unreadable archive or archive without an image."""
        out: list[Problem] = []
        for name, uris in source.files.items():
            for uri in uris:
                key = source.key(name)
                if is_archive(uri):
                    found, problems = scan(ctx, uri, key)
                    out += problems
                    if found is not None and found.complete and not any(is_image(m) for m in found.members):
                        out.append(problem(uri, "the archive", "holds no image file", "pack the images into it "
                                           "(`tar -czf images.tar.gz -C <image folder> .`)", "no_images", spec_key=key))
                else:
                    out += missing(ctx, uri, key)
        return out
