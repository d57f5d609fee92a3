"""Thumbnails: renditions of an artwork's master at allowed sizes and formats, rendered once and cached.

``w`` alone scales to that width, ``h`` alone to that height, both crop to fill the box (centred
horizontally, a little above centre vertically, where faces and titles usually are). Images are never
enlarged beyond the master. Sizes come from a fixed list so that nobody can make the server render
(and store) arbitrary sizes. Renditions are written once to ``<data>/thumbs/`` (a temporary file,
then a rename, so concurrent workers never serve half a file) and served from there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from assets.images import encode
from bandits.errors import Invalid

SIZES = (92, 154, 185, 342, 500, 780, 1280)
FORMATS = {"webp": ("WEBP", "image/webp"), "jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}
DEFAULT_FORMAT = "webp"
CROP_CENTRE = (0.5, 0.4)


@dataclass(frozen=True)
class Rendition:
    """A requested rendition: width and/or height in pixels (0 when not given) and a format name."""

    width: int
    height: int
    format: str

    @property
    def name(self) -> str:
        """Return a file-name-safe name of the rendition."""
        return f"{self.width}x{self.height}.{self.format}"

    @property
    def mimetype(self) -> str:
        """Return the MIME type of the rendition."""
        return FORMATS[self.format][1]


def parse_rendition(args: Mapping[str, str]) -> Rendition | None:
    """Read ``w``, ``h`` and ``format`` from query arguments; None when none is given (the master itself).

    Raises:
        Invalid: naming the argument and the values allowed.
    """
    if not any(key in args for key in ("w", "h", "format")):
        return None
    sizes = []
    for key in ("w", "h"):
        raw = args.get(key)
        if raw is None or raw == "":
            sizes.append(0)
            continue
        if not (raw.isascii() and raw.isdigit()) or int(raw) not in SIZES:
            raise Invalid(f"{key}: must be one of {', '.join(map(str, SIZES))}")
        sizes.append(int(raw))
    fmt = args.get("format") or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise Invalid(f"format: must be one of {', '.join(FORMATS)}")
    return Rendition(width=sizes[0], height=sizes[1], format=fmt)


def render(master: Path, rendition: Rendition) -> bytes:
    """Render a rendition of the master image and return its encoded bytes."""
    with Image.open(master) as source:
        full_width, full_height = source.size
        if source.format == "JPEG" and (rendition.width or rendition.height):
            # Let the JPEG decoder scale down by a power of two on the way; it keeps at least the
            # target size, and LANCZOS takes it from there.
            need = max(rendition.width / full_width, rendition.height / full_height)
            source.draft("RGB", (max(1, round(full_width * need)), max(1, round(full_height * need))))
        image = source.copy()
    scale_back = image.width / full_width  # 1 unless the decoder scaled down
    width, height = full_width, full_height
    box_w, box_h = rendition.width, rendition.height
    if box_w and box_h:
        scale = max(box_w / width, box_h / height)
        if scale > 1:  # never enlarge: shrink the box to what the master can fill
            box_w, box_h = max(1, round(box_w / scale)), max(1, round(box_h / scale))
        image = ImageOps.fit(image, (box_w, box_h), method=Image.Resampling.LANCZOS, centering=CROP_CENTRE)
    elif box_w or box_h:
        scale = box_w / width if box_w else box_h / height
        if scale < 1:
            image = image.resize(
                (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS
            )
        elif scale_back < 1:  # decoded smaller than the master, but the rendition is the master's size
            image = image.resize((width, height), Image.Resampling.LANCZOS)
    return encode(image, FORMATS[rendition.format][0], quality=82)


def rendition_path(data_dir: str | Path, *, artwork_id: str, digest: str, rendition: Rendition) -> Path:
    """Return where a rendition of an artwork is cached (the master's digest keeps it unambiguous)."""
    return Path(data_dir) / "thumbs" / artwork_id / f"{digest[:16]}-{rendition.name}"


def ensure_rendition(data_dir: str | Path, *, artwork_id: str, digest: str, master: Path, rendition: Rendition) -> Path:
    """Return the cached rendition, rendering and storing it first if needed."""
    path = rendition_path(data_dir, artwork_id=artwork_id, digest=digest, rendition=rendition)
    if path.is_file():
        return path
    data = render(master, rendition)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file of its own for every render (threads and processes may render the same
    # rendition at once); the rename is atomic, so a reader sees a whole file or none.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
