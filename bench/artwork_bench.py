"""Artwork benchmark: upload with feature extraction, first thumbnail render, cached thumbnail serving.

Usage (from the repository root, with the dev requirements installed and Debian's wrk):

    python -m bench.artwork_bench [--images 20] [--seconds 15]

1. Upload: ``--images`` photo-like 1000x1500 JPEGs (a demo poster enlarged, with grain, about the
   size of a real poster scan) uploaded through the HTTP API of an in-process app: checks, upright
   master, visual features, file and row. Reported per image.
2. First render: each artwork's 342 px WebP rendition requested once from gunicorn (2 workers).
3. Cached serving: wrk, 8 connections, on one rendition already rendered.
"""

from __future__ import annotations

import argparse
import io
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.report import machine, report


def photo_like_jpeg(seed: int) -> bytes:
    """A 1000x1500 JPEG with poster shapes and film grain (quality 90)."""
    from assets.demo import COMPOSITIONS, PALETTES, poster

    rng = random.Random(seed)
    base = Image.open(
        io.BytesIO(
            poster(
                palette=rng.choice(list(PALETTES)),
                composition=rng.choice(COMPOSITIONS),
                title=f"Poster {seed}",
                rng=rng,
            )
        )
    ).resize((1000, 1500), Image.Resampling.BICUBIC)
    grain = np.random.default_rng(seed).normal(0, 12, (1500, 1000, 3))
    noisy = np.clip(np.asarray(base, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, "JPEG", quality=90)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    from service import create_app
    from tests.gunicorn_harness import Service

    work = Path(tempfile.mkdtemp(prefix="marquee-artwork-bench-"))
    images = [photo_like_jpeg(seed) for seed in range(args.images)]
    app = create_app({"DATA_DIR": str(work / "data"), "LEARNER": False, "AUTH": "off"})
    client = app.test_client()
    client.post("/v1/titles", json={"id": "t1", "name": "Bench"})
    started = time.perf_counter()
    for index, data in enumerate(images):
        response = client.post(
            "/v1/titles/t1/artworks",
            data={"file": (io.BytesIO(data), "p.jpg"), "id": f"a{index}"},
            content_type="multipart/form-data",
        )
        assert response.status_code == 201, response.get_json()
    upload_ms = 1000 * (time.perf_counter() - started) / len(images)

    service = Service(work / "data", workers=2, env={"MARQUEE_LEARNER": "false", "MARQUEE_AUTH": "off"})
    service.start()
    try:
        import http.client

        def get(path: str) -> float:
            conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
            began = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            conn.close()
            return time.perf_counter() - began

        first = [get(f"/v1/artworks/a{index}/image?w=342") for index in range(len(images))]
        again = [get(f"/v1/artworks/a{index}/image?w=342") for index in range(len(images))]
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                "-c8",
                f"-d{int(args.seconds)}s",
                "--latency",
                f"http://127.0.0.1:{service.port}/v1/artworks/a0/image?w=342",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        service.stop()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    result = {
        "command": f"python -m bench.artwork_bench --images {args.images} --seconds {args.seconds:g}",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "jpeg_kb_mean": round(sum(map(len, images)) / len(images) / 1024, 1),
        "upload_with_features_ms_per_image": round(upload_ms, 1),
        "first_render_342_webp_ms_median": round(1000 * float(np.median(first)), 1),
        "cached_342_webp_ms_median": round(1000 * float(np.median(again)), 2),
        "cached_serve_requests_per_second": rate,
        "cached_serve_p99": p99,
    }
    report("artwork", result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
