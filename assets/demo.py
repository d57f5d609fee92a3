"""A deterministic demo catalog: titles across genres, each with posters drawn by Pillow in distinct styles."""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image, ImageDraw

from assets import catalog
from assets.images import check_image
from bandits.storage import Database

GENRES = ("comedy", "drama", "thriller", "horror", "romance", "sci-fi", "documentary", "animation", "action", "crime")
MATURITY = ("G", "PG", "PG-13", "R")
WORDS = (
    "Midnight",
    "Golden",
    "Silent",
    "Last",
    "Broken",
    "Hidden",
    "Electric",
    "Paper",
    "Iron",
    "Velvet",
    "Northern",
    "Lost",
    "Crimson",
    "Glass",
    "Wild",
    "Quiet",
    "Burning",
    "Distant",
    "Secret",
    "Summer",
)
NOUNS = (
    "Harbor",
    "Garden",
    "Signal",
    "Orbit",
    "Letters",
    "Heist",
    "Kingdom",
    "Echo",
    "River",
    "Circus",
    "Frontier",
    "Engine",
    "Island",
    "Verdict",
    "Parade",
    "Lantern",
    "Empire",
    "Tide",
    "Mirror",
    "Machine",
)
SIZE = (300, 450)

# Palettes by mood: (background top, background bottom, accent).
PALETTES = {
    "dark-warm": ((40, 12, 8), (90, 30, 10), (230, 120, 40)),
    "dark-cool": ((8, 14, 40), (10, 40, 80), (80, 180, 240)),
    "bright-warm": ((255, 214, 120), (250, 140, 60), (200, 30, 40)),
    "bright-cool": ((190, 235, 255), (120, 200, 230), (20, 90, 200)),
    "neutral": ((200, 200, 200), (120, 120, 120), (30, 30, 30)),
}
COMPOSITIONS = ("face", "ensemble", "landscape", "text")


def _gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(image)
    for y in range(SIZE[1]):
        t = y / (SIZE[1] - 1)
        draw.line([(0, y), (SIZE[0], y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    return image


def _face(draw: ImageDraw.ImageDraw, accent: tuple[int, int, int], rng: random.Random) -> None:
    cx, cy, r = SIZE[0] // 2 + rng.randint(-30, 30), 190 + rng.randint(-20, 20), rng.randint(85, 110)
    draw.ellipse([cx - r, cy - r, cx + r, cy + int(r * 1.2)], fill=(224, 172, 140))
    for dx in (-r // 3, r // 3):
        draw.ellipse([cx + dx - 10, cy - 15, cx + dx + 10, cy + 5], fill=(30, 20, 20))
    draw.arc([cx - r // 2, cy + r // 4, cx + r // 2, cy + r // 1.4], 20, 160, fill=(120, 40, 40), width=5)
    draw.rectangle([cx - r, cy + int(r * 1.2), cx + r, SIZE[1]], fill=accent)


def _ensemble(draw: ImageDraw.ImageDraw, accent: tuple[int, int, int], rng: random.Random) -> None:
    for i in range(rng.randint(4, 6)):
        cx = 40 + i * 50 + rng.randint(-8, 8)
        cy = 260 + rng.randint(-30, 30)
        draw.ellipse([cx - 22, cy - 22, cx + 22, cy + 22], fill=(214, 168, 136))
        draw.rectangle([cx - 26, cy + 24, cx + 26, cy + 120], fill=accent)


def _landscape(draw: ImageDraw.ImageDraw, accent: tuple[int, int, int], rng: random.Random) -> None:
    horizon = rng.randint(250, 320)
    points = (
        [(0, horizon)]
        + [(x, horizon - rng.randint(0, 90)) for x in range(0, SIZE[0] + 1, 50)]
        + [(SIZE[0], SIZE[1]), (0, SIZE[1])]
    )
    draw.polygon(points, fill=tuple(c // 2 for c in accent))
    r = rng.randint(25, 45)
    draw.ellipse([200 - r, 90 - r, 200 + r, 90 + r], fill=accent)


def _text(draw: ImageDraw.ImageDraw, accent: tuple[int, int, int], rng: random.Random) -> None:
    for row in range(rng.randint(6, 9)):
        y = 80 + row * 36
        x = 30
        while x < SIZE[0] - 40:
            w = rng.randint(20, 60)
            draw.rectangle([x, y, x + w, y + 18], fill=accent)
            x += w + 10


DRAWERS: dict[str, Callable[[ImageDraw.ImageDraw, tuple[int, int, int], random.Random], None]] = {
    "face": _face,
    "ensemble": _ensemble,
    "landscape": _landscape,
    "text": _text,
}


def poster(*, palette: str, composition: str, title: str, rng: random.Random) -> bytes:
    """Draw one poster and return it as JPEG bytes."""
    top, bottom, accent = PALETTES[palette]
    image = _gradient(top, bottom)
    draw = ImageDraw.Draw(image)
    DRAWERS[composition](draw, accent, rng)
    draw.rectangle([0, SIZE[1] - 60, SIZE[0], SIZE[1]], fill=tuple(c // 3 for c in bottom))
    draw.text((16, SIZE[1] - 44), title.upper(), fill=(245, 245, 245))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def demo_titles(
    *, seed: int, count: int, artworks_per_title: int | None = None
) -> Iterator[tuple[dict, list[tuple[str, list[str], bytes]]]]:
    """Yield (title body, [(artwork id, tags, JPEG bytes)]) for ``count`` titles, deterministic for ``seed``.

    Each title gets 3-6 posters in distinct styles, or exactly ``artworks_per_title``.
    """
    rng = random.Random(seed)
    for index in range(count):
        name = f"{rng.choice(WORDS)} {rng.choice(NOUNS)}"
        title_id = f"t{index + 1:03d}"
        genres = rng.sample(GENRES, k=rng.choice((1, 2, 2, 3)))
        body = {
            "id": title_id,
            "name": name,
            "genres": genres,
            "year": rng.randint(1975, 2026),
            "maturity": rng.choice(MATURITY),
            "features": {"runtime_minutes": rng.randint(80, 160)},
        }
        styles = [(p, c) for p in PALETTES for c in COMPOSITIONS]
        rng.shuffle(styles)
        artworks = []
        how_many = rng.randint(3, 6) if artworks_per_title is None else artworks_per_title
        for number, (palette, composition) in enumerate(styles[:how_many]):
            tags = [palette, composition]
            artworks.append(
                (
                    f"{title_id}-a{number + 1}",
                    tags,
                    poster(palette=palette, composition=composition, title=name, rng=rng),
                )
            )
        yield body, artworks


def build_demo_catalog(
    db: Database,
    *,
    data_dir: str | Path,
    seed: int = 7,
    count: int = 60,
    artworks_per_title: int | None = None,
    progress: Callable[[int], None] | None = None,
    keep_in_database: bool = False,
) -> dict[str, int]:
    """Add the demo catalog through the same checks as uploads; skip titles that already exist.

    ``keep_in_database``: keep each master in the database as well (``catalog.add_artwork``).
    """
    added_titles = added_artworks = 0
    existing = {row["id"] for row in catalog.list_titles(db, include_retired=True)}
    for body, artworks in demo_titles(seed=seed, count=count, artworks_per_title=artworks_per_title):
        if body["id"] not in existing:
            catalog.create_title(db, body)
            for artwork_id, tags, data in artworks:
                catalog.add_artwork(
                    db,
                    data_dir=data_dir,
                    title_id=body["id"],
                    image=check_image(data),
                    artwork_id=artwork_id,
                    tags=tags,
                    keep_in_database=keep_in_database,
                )
                added_artworks += 1
            added_titles += 1
        if progress is not None:
            progress(1)
    return {"titles_added": added_titles, "artworks_added": added_artworks}
