"""Markdown whose local images travel with it: relative image links become data URIs.

The comparison report links its profile plot by a file name next to it, which a reader of
the report file resolves and a Prefect artifact cannot (the UI has no file to fetch). The
artifact carries the same Markdown with each local PNG, SVG, JPEG or GIF inlined instead.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

MEDIA_TYPES = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
}
# ![alt](target) with a target that has no scheme (so not http:, data:, ...) and no spaces.
IMAGE_LINK = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<target>(?![a-zA-Z][\w+.-]*:)[^)\s]+)\)")


def data_uri(path: Path) -> str:
    """`path`'s bytes as a base64 data URI of its media type (by suffix)."""
    media_type = MEDIA_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise ValueError(
            f"{path}: cannot inline an image of type {path.suffix!r}; "
            f"expected one of {', '.join(sorted(MEDIA_TYPES))}"
        )
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def inline_images(markdown: str, directory: str | Path) -> str:
    """`markdown` with every image link relative to `directory` replaced by its data URI.

    Links to a file that does not exist, or of a type not in MEDIA_TYPES, and absolute URLs
    are left as they are.
    """
    directory = Path(directory)

    def replace(match: re.Match[str]) -> str:
        path = directory / match["target"]
        if not path.is_file() or path.suffix.lower() not in MEDIA_TYPES:
            return match[0]
        return f"![{match['alt']}]({data_uri(path)})"

    return IMAGE_LINK.sub(replace, markdown)
