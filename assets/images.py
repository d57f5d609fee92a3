"""Check uploaded images with Pillow, store a clean master, and compute the visual features.

An upload passes when it is a whole, still JPEG, PNG or WebP image within the size limits. What is
stored and served is not the upload itself but a *master* re-encoded from it by Pillow: turned
upright by its EXIF orientation, converted to sRGB through its ICC profile when it has one, in RGB
(or RGBA where it has transparency), with every piece of metadata dropped (EXIF, XMP, comments and
the profile itself). Every thumbnail is rendered from the master, so no served byte carries the
uploader's metadata.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from bandits.errors import InvalidImage

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 16
MAX_SIDE = 16383  # WebP's limit: every rendition must be encodable
ANALYSIS_SIDE = 256  # features are computed on a copy at most this large: cheap and stable
HUE_NAMES = (
    "red",
    "orange",
    "yellow",
    "chartreuse",
    "green",
    "spring",
    "cyan",
    "azure",
    "blue",
    "violet",
    "magenta",
    "rose",
)
WHITE = (255, 255, 255)
SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class CheckedImage:
    """An upload that passed every check: its master bytes, format, size and visual features."""

    data: bytes  # the master: upright, metadata-free, re-encoded by Pillow
    format: str
    extension: str
    width: int
    height: int
    visual: dict[str, Any]


def check_image(data: bytes) -> CheckedImage:
    """Check that ``data`` is a whole still image Marquee accepts; return its master and features.

    Raises:
        InvalidImage: naming what is wrong (size, format, animation, pixels, corrupt data).
    """
    if not data:
        raise InvalidImage("file: the upload is empty")
    if len(data) > MAX_BYTES:
        raise InvalidImage(
            f"file: the upload is {len(data):,} bytes; an image may be at most {MAX_BYTES:,} bytes "
            f"({MAX_BYTES / 2**20:g} MiB)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or ""
                if fmt == "MPO":  # a JPEG with extra pictures (phones store depth or gain maps)
                    fmt = "JPEG"
                width, height = probe.size
                if fmt not in ALLOWED_FORMATS:
                    raise InvalidImage(f"file: format {fmt or 'unknown'} is not accepted (use JPEG, PNG or WebP)")
                if width * height > MAX_PIXELS:
                    raise InvalidImage(f"file: {width}x{height} is more than {MAX_PIXELS} pixels")
                if min(width, height) < MIN_SIDE:
                    raise InvalidImage(f"file: {width}x{height} is smaller than {MIN_SIDE} pixels on a side")
                if max(width, height) > MAX_SIDE:
                    raise InvalidImage(f"file: {width}x{height} is more than {MAX_SIDE} pixels on a side")
                if getattr(probe, "n_frames", 1) > 1 and probe.format != "MPO":
                    raise InvalidImage("file: animated images are not accepted (upload one still frame)")
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # verify() misses truncated pixel data; decoding it all does not
                upright = normalize(to_srgb(image))
                upright.info = {}  # nothing of the upload's metadata may reach the encoder
            master = encode(upright, fmt)
    except InvalidImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImage(
            "file: not a readable image (or one that decodes to too many pixels); upload a JPEG, PNG "
            "or WebP still image"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"file: the image is corrupt or truncated ({exc})") from None
    return CheckedImage(
        data=master,
        format=fmt,
        extension=ALLOWED_FORMATS[fmt],
        width=upright.width,
        height=upright.height,
        visual=visual_features(upright),
    )


def to_srgb(image: Image.Image) -> Image.Image:
    """Return the image converted to sRGB through its embedded ICC profile (as is without a usable one)."""
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        mode = "RGBA" if image.mode in ("RGBA", "LA", "PA") else "RGB"
        converted = ImageCms.profileToProfile(image, source, SRGB, outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # an unreadable or mismatched profile: the pixels are taken as sRGB
    if converted is None:
        return image
    converted.info.pop("icc_profile", None)
    exif = image.getexif()
    if exif:  # keep the orientation for exif_transpose; the rest is dropped at encoding
        converted.info["exif"] = exif.tobytes()
    return converted


def normalize(image: Image.Image) -> Image.Image:
    """Return the image upright (EXIF orientation applied) in RGB, or RGBA if it has transparency."""
    upright = ImageOps.exif_transpose(image) or image
    mode = upright.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # 16-bit (or 32-bit) grey: Pillow's RGB conversion clips every value above 255 to white.
        deep = np.asarray(upright, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or deep.max() > 255 else 255.0
        return Image.fromarray(np.clip(deep / top * 255.0, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in upright.info)
    if has_alpha:
        rgba = upright.convert("RGBA")
        if int(np.asarray(rgba.getchannel("A")).min()) < 255:  # some pixel is actually transparent
            return rgba
        return rgba.convert("RGB")
    return upright.convert("RGB")


def flatten(image: Image.Image) -> Image.Image:
    """Return the image in RGB, transparent areas composited over white."""
    if image.mode != "RGBA":
        return image.convert("RGB")
    background = Image.new("RGB", image.size, WHITE)
    background.paste(image, mask=image.getchannel("A"))
    return background


def encode(image: Image.Image, fmt: str, *, quality: int = 90) -> bytes:
    """Encode an (sRGB) image as JPEG, PNG or WebP with no metadata at all."""
    out = io.BytesIO()
    if fmt == "JPEG":
        flatten(image).save(out, "JPEG", quality=quality, optimize=True)
    elif fmt == "PNG":
        image.save(out, "PNG", optimize=False, compress_level=6, icc_profile=None)  # PNG would copy info's
    elif fmt == "WEBP":
        image.save(out, "WEBP", quality=quality, method=4)
    else:
        raise ValueError(f"cannot encode {fmt}")
    return out.getvalue()


def visual_features(image: Image.Image) -> dict[str, Any]:
    """Return the visual features of an image (docs/how-it-works.md has a table of what each one means).

    Every number is in [0, 1] except ``aspect`` (width / height). Computed on a copy whose longer side
    is at most ``ANALYSIS_SIDE`` pixels, transparent areas composited over white.
    """
    width, height = image.size
    small = flatten(image)
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
    bins = np.floor(hue[chromatic] * 12 + 0.5).astype(int) % 12  # bin 0 is centred on red
    histogram = np.bincount(bins, weights=sat[chromatic], minlength=12)
    if chroma_share >= 0.05:
        dominant = HUE_NAMES[int(np.argmax(histogram))]
        warm = np.isin(bins, [11, 0, 1, 2])  # rose, red, orange, yellow
        cool = np.isin(bins, [6, 7, 8, 9])  # cyan, azure, blue, violet
        warmth = float((warm.sum() - cool.sum()) / max(1, len(bins)) * 0.5 + 0.5)
    else:
        dominant = "neutral"
        warmth = 0.5
    total = float(histogram.sum())
    return {
        "brightness": round(float(luma.mean()), 4),
        "contrast": round(float(min(1.0, luma.std() * 2.0)), 4),
        "saturation": round(float(sat.mean()), 4),
        "colorfulness": round(min(1.0, colorfulness / 0.6), 4),
        "dominant_hue": dominant,
        "hue_histogram": [round(float(v) / total, 4) if total else 0.0 for v in histogram],
        "chromatic_share": round(chroma_share, 4),
        "warmth": round(warmth, 4),
        "palette": palette(small),
        "edge_density": round(edge_density(luma), 4),
        "flat_share": round(flat_share(luma), 4),
        "text_like_share": round(text_like_share(luma), 4),
        "skin_share": round(skin_share(small), 4),
        "aspect": round(width / height, 4),
    }


def palette(image: Image.Image, colours: int = 5) -> list[dict[str, Any]]:
    """Return the image's dominant colours (median cut), most covering first: hex and share."""
    quantized = image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    counts: list[tuple[int, int]] = sorted(quantized.getcolors() or [], reverse=True)  # type: ignore[arg-type]
    flat = quantized.getpalette() or []
    size = image.width * image.height
    return [
        {"hex": "#{:02x}{:02x}{:02x}".format(*flat[3 * index : 3 * index + 3]), "share": round(count / size, 4)}
        for count, index in counts[:colours]
    ]


def _gradients(luma: np.ndarray) -> np.ndarray:
    """Return the gradient magnitude from forward differences (which see one-pixel detail)."""
    gx = np.zeros_like(luma)
    gy = np.zeros_like(luma)
    gx[:, :-1] = luma[:, 1:] - luma[:, :-1]
    gy[:-1, :] = luma[1:, :] - luma[:-1, :]
    return np.hypot(gx, gy)


def edge_density(luma: np.ndarray, threshold: float = 0.2) -> float:
    """Share of pixels on a strong edge: how busy the image looks."""
    return float((_gradients(luma) > threshold).mean())


def _blocks(luma: np.ndarray, size: int) -> np.ndarray:
    rows, cols = luma.shape[0] // size, luma.shape[1] // size
    if rows == 0 or cols == 0:
        return luma[np.newaxis, np.newaxis]
    trimmed = luma[: rows * size, : cols * size]
    return trimmed.reshape(rows, size, cols, size).swapaxes(1, 2)


def flat_share(luma: np.ndarray, size: int = 8, spread: float = 0.02) -> float:
    """Share of 8x8 blocks with almost no variation: plain backgrounds, sky, solid colour."""
    blocks = _blocks(luma, size)
    return float((blocks.std(axis=(2, 3)) < spread).mean())


def text_like_share(luma: np.ndarray, size: int = 16) -> float:
    """Share of 16x16 blocks that look like lettering: two-tone, high contrast, many strokes.

    A heuristic: large type on a plain ground scores, and so do stripes, grilles and other fine
    two-tone patterns; small or low-contrast type may not.
    """
    blocks = _blocks(luma, size)
    low = np.percentile(blocks, 10, axis=(2, 3))
    high = np.percentile(blocks, 90, axis=(2, 3))
    contrast = high - low
    middle = (low + high) / 2
    binary = blocks > middle[..., None, None]
    # Strokes: transitions between ink and ground along rows.
    transitions = (binary[..., :, 1:] != binary[..., :, :-1]).sum(axis=(2, 3)) / (size * (size - 1))
    # Two-tone: few pixels far from both tones.
    mid_tone = (np.abs(blocks - middle[..., None, None]) < contrast[..., None, None] * 0.25).mean(axis=(2, 3))
    return float(((contrast > 0.35) & (transitions > 0.06) & (mid_tone < 0.25)).mean())


def skin_share(image: Image.Image) -> float:
    """Share of pixels in a common skin-tone range (YCbCr rule): a rough "people in frame" signal.

    It cannot tell faces from wood, sand or warm lighting, and fixed colour rules like this one are
    known to miss some skin tones under unusual light; treat it as one weak feature among many.
    """
    ycbcr = np.asarray(image.convert("YCbCr"), dtype=np.int16)
    y, cb, cr = ycbcr[..., 0], ycbcr[..., 1], ycbcr[..., 2]
    return float(((y > 40) & (cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)).mean())


def _level(value: float) -> str:
    return "low" if value < 1 / 3 else "mid" if value < 2 / 3 else "high"


def _share_level(value: float) -> str:
    return "none" if value < 0.02 else "some" if value < 0.15 else "much"


def visual_tokens(visual: dict[str, Any]) -> list[str]:
    """Return the artwork policy's features for stored visual features: levels and scaled numbers.

    Artworks stored before a feature existed simply lack its tokens.
    """
    tokens = [
        f"bright={_level(visual['brightness'])}",
        f"contrast={_level(visual['contrast'])}",
        f"sat={_level(visual['saturation'])}",
        f"colorful={_level(visual['colorfulness'])}",
        f"hue={visual['dominant_hue']}",
        f"warmth={_level(visual['warmth'])}",
    ]
    if "edge_density" in visual:
        tokens.append(f"busy={_level(min(1.0, visual['edge_density'] * 4))}")
    for name, label in (("flat_share", "flat"), ("text_like_share", "text"), ("skin_share", "skin")):
        if name in visual:
            tokens.append(f"{label}={_share_level(visual[name])}")
    aspect = visual.get("aspect")
    if aspect is not None:
        tokens.append("shape=" + ("portrait" if aspect < 0.9 else "landscape" if aspect > 1.1 else "square"))
    for name in ("brightness", "contrast", "saturation", "colorfulness", "warmth", "edge_density", "skin_share"):
        if visual.get(name):
            tokens.append(f"{name}:{visual[name]:.4g}")
    return tokens
