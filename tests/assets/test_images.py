"""Visual features on images whose properties are known, and the clean master stored for each upload."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from assets.images import check_image, visual_tokens
from service.errors import InvalidImage


def encoded(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def features_of(image: Image.Image) -> dict:
    return check_image(encoded(image)).visual


def test_pure_red_square():
    v = features_of(Image.new("RGB", (100, 100), (255, 0, 0)))
    assert v["dominant_hue"] == "red" and v["saturation"] == pytest.approx(1.0)
    assert v["warmth"] == pytest.approx(1.0) and v["contrast"] == 0.0 and v["edge_density"] == 0.0
    assert v["flat_share"] == 1.0 and v["aspect"] == 1.0
    assert v["palette"] == [{"hex": "#ff0000", "share": 1.0}]
    assert v["hue_histogram"][0] == pytest.approx(1.0)


def test_blue_is_cool_and_grey_is_neutral():
    assert features_of(Image.new("RGB", (64, 64), (0, 0, 255)))["warmth"] == pytest.approx(0.0)
    grey = features_of(Image.new("RGB", (64, 64), (128, 128, 128)))
    assert grey["dominant_hue"] == "neutral" and grey["saturation"] == 0.0 and grey["colorfulness"] == 0.0


def test_checkerboard_has_high_contrast_and_edges():
    board = ((np.indices((200, 200)).sum(axis=0) % 2) * 255).astype(np.uint8)
    v = features_of(Image.fromarray(board).convert("RGB"))
    assert v["contrast"] == pytest.approx(1.0) and v["brightness"] == pytest.approx(0.5, abs=0.02)
    assert v["edge_density"] > 0.3 and v["flat_share"] == 0.0


def test_lettering_scores_as_text_like_and_a_photo_like_gradient_does_not():
    sheet = Image.new("RGB", (300, 450), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for row in range(12):
        x = 20
        while x < 270:
            width = 6 + (x * 7 + row * 13) % 20
            draw.rectangle([x, 30 + row * 34, x + width, 44 + row * 34], fill=(10, 10, 10))
            x += width + 6
    gradient = Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (450, 1))).convert("RGB")
    assert features_of(sheet)["text_like_share"] > 0.3
    assert features_of(gradient)["text_like_share"] == 0.0


def test_skin_tones_register_and_a_sky_does_not():
    assert features_of(Image.new("RGB", (64, 64), (224, 172, 140)))["skin_share"] == pytest.approx(1.0)
    assert features_of(Image.new("RGB", (64, 64), (120, 170, 230)))["skin_share"] == 0.0


def test_tokens_are_levels_and_numbers():
    tokens = visual_tokens(features_of(Image.new("RGB", (100, 200), (224, 172, 140))))
    assert {"hue=orange", "skin=much", "flat=much", "text=none", "busy=low", "shape=portrait"} <= set(tokens)
    assert any(token.startswith("brightness:") for token in tokens)


def _exif_jpeg(orientation: int) -> bytes:
    image = Image.new("RGB", (120, 60), (200, 30, 30))
    ImageDraw.Draw(image).rectangle([0, 0, 20, 20], fill=(0, 0, 255))  # a blue mark, top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010E] = "private description"
    return encoded(image, "JPEG", exif=exif, quality=95)


def test_master_is_upright_and_carries_no_metadata():
    checked = check_image(_exif_jpeg(6))  # 6: stored rotated, shown turned 90 degrees clockwise
    assert (checked.width, checked.height) == (60, 120)
    with Image.open(io.BytesIO(checked.data)) as master:
        assert master.size == (60, 120)
        assert not master.getexif()  # orientation, description: gone
        assert master.getpixel((55, 5))[2] > 150  # the blue mark is now top-right


def test_transparency_is_kept_in_png_masters_and_features_see_white():
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    checked = check_image(encoded(image))
    with Image.open(io.BytesIO(checked.data)) as master:
        assert master.mode == "RGBA"
    assert checked.visual["brightness"] == pytest.approx(1.0)


def test_animated_images_are_refused():
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(InvalidImage, match="animated"):
        check_image(out.getvalue())


def test_decompression_bombs_are_refused():
    # 8000 x 8000 of one colour compresses to a few hundred bytes and decodes to 64 million pixels.
    bomb = encoded(Image.new("L", (8000, 8000)), "PNG", optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(InvalidImage, match="pixels"):
        check_image(bomb)


def test_multi_picture_jpegs_are_taken_as_their_first_picture():
    first, second = Image.new("RGB", (64, 96), (200, 30, 30)), Image.new("RGB", (64, 96), (30, 30, 200))
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[second])
    checked = check_image(out.getvalue())
    assert checked.format == "JPEG" and checked.visual["dominant_hue"] == "red"


def test_exploration_refuses_non_finite_costs():
    from bandits.model.exploration import epsilon_greedy, epsilon_greedy_row

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="finite"):
        epsilon_greedy([float("nan"), 0.0], 0.1, rng)
    with pytest.raises(ValueError, match="finite"):
        epsilon_greedy_row([0.0, float("inf")], 1, 0.1, rng)
