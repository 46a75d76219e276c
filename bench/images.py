"""Card rendering speed and prune speed, with no network and no Redis.

Renders cards at the default size (1280x720) for a short title and for a long Cyrillic title that has to be
wrapped and shrunk, then stores N unattached images (half of them stale) and times one prune over them.
Prints ms per card and images pruned per second.

    python bench/images.py [--cards 50] [--images 2000]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from contentq.clock import iso, now  # noqa: E402
from contentq.images.card import CardRenderer, CardStyle  # noqa: E402
from contentq.images.store import prune_images, save_generated  # noqa: E402
from contentq.integrations.image_generator import GeneratedImage  # noqa: E402
from contentq.runtime.context import Runtime  # noqa: E402
from contentq.settings import load_settings  # noqa: E402

SHORT = "Курс рубля укрепился"
LONG = (
    "Правительство утвердило новую программу развития региональных аэропортов: до 2030 года "
    "реконструируют сорок две взлётно-посадочные полосы и построят девять новых терминалов"
) * 2


def bench_cards(n: int) -> None:
    renderer = CardRenderer(CardStyle())
    for label, text in (("short title", SHORT), ("long title (wrapped, shrunk)", LONG)):
        renderer.generate(text)  # warm the font cache
        start = time.perf_counter()
        for _ in range(n):
            renderer.generate(text)
        per = (time.perf_counter() - start) / n * 1000
        print(f"card, {label}: {per:.1f} ms per card ({n} cards)")


def bench_prune(n: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        rt = Runtime(load_settings(home=Path(home)))
        old = iso(now() - timedelta(days=30))
        for i in range(n):
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, 7)).save(buffer, "PNG")
            image = GeneratedImage(buffer.getvalue(), "image/png", 8, 8, "card")
            saved = save_generated(rt, None, image, f"bench {i}")
            if i % 2 == 0:
                rt.store.execute("UPDATE media SET created_at = ? WHERE id = ?", (old, saved.image_id))
        start = time.perf_counter()
        summary = prune_images(rt, "7d")
        elapsed = time.perf_counter() - start
        print(
            f"prune: {summary['deleted']} of {n} unattached images deleted in {elapsed:.2f} s "
            f"({summary['deleted'] / elapsed:.0f} images/s)"
        )
        rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=50)
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    bench_cards(args.cards)
    bench_prune(args.images)


if __name__ == "__main__":
    main()
