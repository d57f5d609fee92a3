"""Check uploaded images with Pillow and compute the visual features the artwork policy learns from."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import InvalidImage

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 16
ANALYSIS_SIDE = 256  # features are computed on a copy at most this large: cheap and stable
HUE_NAMES = ("red", "orange", "yellow", "chartreuse", "green", "spring", "cyan", "azure", "blue", "violet",
             "magenta", "rose")


@dataclass(frozen=True)
class CheckedImage:
    """An upload that passed every check, with its facts."""

    data: bytes
    format: str
    extension: str
    width: int
    height: int
    visual: dict[str, Any]


def check_image(data: bytes) -> CheckedImage:
    """Check that ``data`` is a whole image Marquee accepts and compute its visual features.

    Raises:
        InvalidImage: naming what is wrong (size, format, pixels, corrupt data).
    """
    if not data:
        raise InvalidImage("file: the upload is empty")
    if len(data) > MAX_BYTES:
        raise InvalidImage(f"file: the upload is {len(data)} bytes; the limit is {MAX_BYTES}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or ""
                width, height = probe.size
                if fmt not in ALLOWED_FORMATS:
                    raise InvalidImage(f"file: format {fmt or 'unknown'} is not accepted (use JPEG, PNG or WebP)")
                if width * height > MAX_PIXELS:
                    raise InvalidImage(f"file: {width}x{height} is more than {MAX_PIXELS} pixels")
                if min(width, height) < MIN_SIDE:
                    raise InvalidImage(f"file: {width}x{height} is smaller than {MIN_SIDE} pixels on a side")
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # verify() misses truncated pixel data; decoding it all does not
                visual = visual_features(image)
    except InvalidImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage("file: not a readable image (or one that decodes to too many pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"file: the image is corrupt or truncated ({exc})") from None
    return CheckedImage(data=data, format=fmt, extension=ALLOWED_FORMATS[fmt], width=width, height=height,
                        visual=visual)


def visual_features(image: Image.Image) -> dict[str, Any]:
    """Return brightness, contrast, saturation, colorfulness, dominant hue and warmth of an image.

    All numbers are in [0, 1] except ``aspect`` (width / height). Computed on a copy whose longer
    side is at most ``ANALYSIS_SIDE`` pixels.
    """
    width, height = image.size
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit (or 32-bit) grey: Pillow's RGB conversion clips every value above 255 to white.
        deep = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or deep.max() > 255 else 255.0
        image = Image.fromarray(np.clip(deep / top * 255.0, 0, 255).astype(np.uint8), mode="L")
    small = image.convert("RGB")
    small.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE))
    rgb = np.asarray(small, dtype=np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    hsv = np.asarray(small.convert("HSV"), dtype=np.float64) / 255.0
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    # Colorfulness after Hasler and Suesstrunk (2003), on [0, 1] channels; ~0.6 is extremely colourful.
    rg = r - g
    yb = 0.5 * (r + g) - b
    colorfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    chromatic = (sat > 0.2) & (val > 0.2)
    chroma_share = float(chromatic.mean())
    if chroma_share >= 0.05:
        bins = np.floor(hue[chromatic] * 12 + 0.5).astype(int) % 12  # bin 0 is centred on red
        histogram = np.bincount(bins, weights=sat[chromatic], minlength=12)
        dominant = HUE_NAMES[int(np.argmax(histogram))]
        warm = np.isin(bins, [11, 0, 1, 2])  # rose, red, orange, yellow
        cool = np.isin(bins, [6, 7, 8, 9])  # cyan, azure, blue, violet
        warmth = float((warm.sum() - cool.sum()) / max(1, len(bins)) * 0.5 + 0.5)
    else:
        dominant = "neutral"
        warmth = 0.5
    return {
        "brightness": round(float(luma.mean()), 4),
        "contrast": round(float(min(1.0, luma.std() * 2.0)), 4),
        "saturation": round(float(sat.mean()), 4),
        "colorfulness": round(min(1.0, colorfulness / 0.6), 4),
        "dominant_hue": dominant,
        "chromatic_share": round(chroma_share, 4),
        "warmth": round(warmth, 4),
        "aspect": round(width / height, 4),
    }


def _level(value: float) -> str:
    return "low" if value < 1 / 3 else "mid" if value < 2 / 3 else "high"


def visual_tokens(visual: dict[str, Any]) -> list[str]:
    """Return the artwork policy's features for stored visual features: levels and scaled numbers."""
    tokens = [
        f"bright={_level(visual['brightness'])}",
        f"contrast={_level(visual['contrast'])}",
        f"sat={_level(visual['saturation'])}",
        f"colorful={_level(visual['colorfulness'])}",
        f"hue={visual['dominant_hue']}",
        f"warmth={_level(visual['warmth'])}",
    ]
    for name in ("brightness", "contrast", "saturation", "colorfulness", "warmth"):
        if visual[name]:
            tokens.append(f"{name}:{visual[name]:.4g}")
    return tokens
