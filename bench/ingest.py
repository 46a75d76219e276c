"""Ingest throughput: synthetic posts through dedup (content hash + MinHash LSH) and route filters into SQLite.

    python bench/ingest.py [--posts 100000] [--batch 1000] [--threshold 0.65] [--footers] [--tracemalloc]

77 % of the posts are unique (half of them with a few numbers, 3 % spam for the filters), 10 % exact
copies of an earlier post from another channel (other case, punctuation, links), 10 % near copies (two to
four words changed, a footer sentence added), 3 % template posts (a daily exchange-rate line from several
channels: same words, other numbers; different news, so any duplicate found among them is a false
positive). With --footers every channel ends its posts with its own footer line, learned per channel
(content/footer.py) from its first posts and stripped before dedup, as an import does. Every post is
stored as a row of a real SQLite database (one transaction per batch, as an import does). Prints posts/s,
what dedup found against what was planted, the time a new worker takes to load the index from SQLite, and
peak memory (RSS; --tracemalloc adds Python-heap tracing, which slows the run).
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contentq.content.dedup import DedupIndex  # noqa: E402
from contentq.content.footer import learn  # noqa: E402
from contentq.ingest import Candidate, Counts, Ingestor  # noqa: E402
from contentq.routes import Filters, Route  # noqa: E402
from contentq.settings import Settings  # noqa: E402
from contentq.store import open_store  # noqa: E402

SOURCES = [f"@donor_{i:02d}" for i in range(20)]


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(size)]


def footer_of(source: str) -> str:
    return f'\n\nSubscribe: @{source[1:]} | <a href="https://t.me/{source[1:]}_chat">our chat</a>'


def make_posts(n: int, seed: int = 7, footers: bool = False) -> tuple[list[tuple[Candidate, str]], dict[str, int]]:
    """(candidate, planted kind) pairs; kinds: unique, exact, near, template."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    originals: list[tuple[str, str]] = []  # (text, source)
    out: list[tuple[Candidate, str]] = []
    planted = {"unique": 0, "exact": 0, "near": 0, "template": 0}
    for i in range(n):
        roll = rng.random()
        if roll > 0.97:
            kind, source = "template", rng.choice(SOURCES)
            text = (
                f"Exchange rates for day {rng.randint(1, 365)}: dollar {rng.uniform(80, 100):.2f}, euro "
                f"{rng.uniform(90, 110):.2f}, yuan {rng.uniform(10, 14):.2f} roubles, as set by the central bank"
            )
        elif originals and roll < 0.10:
            text, source = rng.choice(originals)
            kind = "exact"
            text = text.upper() + "!!! https://t.me/" + rng.choice(SOURCES)[1:]  # same content, other dressing
        elif originals and roll < 0.20:
            text, source = rng.choice(originals)
            kind = "near"
            tokens = text.split()
            for _ in range(rng.randint(2, 4)):
                tokens[rng.randrange(len(tokens))] = rng.choice(words)
            text = " ".join(tokens) + " Subscribe to our channel for more news."
        else:
            kind = "unique"
            text = " ".join(rng.choice(words) for _ in range(rng.randint(50, 110))).capitalize() + "."
            if rng.random() < 0.5:  # numbers, which near copies keep (unless an edit hits one)
                text += " In figures: " + ", ".join(str(rng.randint(2, 9999)) for _ in range(rng.randint(1, 4))) + "."
            if rng.random() < 0.03:  # spam the route's filters catch
                text += rng.choice([" Big casino bonus today.", " Subscribe to @rival_channel now!"])
            source = rng.choice(SOURCES)
            originals.append((text, source))
        other_sources = [s for s in SOURCES if s != source]
        post_source = source if kind in ("unique", "template") else rng.choice(other_sources)
        html = f"<b>{text[:30]}</b>{text[30:]}" if i % 3 == 0 else text
        if footers:
            html += footer_of(post_source)
        out.append((Candidate(post_source, [i + 1], html, datetime.now(UTC)), kind))
        planted[kind] += 1
    return out, planted


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="posts per transaction")
    parser.add_argument("--threshold", type=float, default=Settings.model_fields["near_duplicate_threshold"].default)
    parser.add_argument("--footers", action="store_true", help="every channel's posts end with its own footer")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (slower)")
    args = parser.parse_args()

    print(f"generating {args.posts:,} synthetic posts …", flush=True)
    posts, planted = make_posts(args.posts, footers=args.footers)
    route = Route(
        name="bench", target="@mine", sources=SOURCES, rewriter="none",
        filters=Filters(stop_words=["casino", "giveaway", "crypto pump"], regexes=[r"(?i)promo\s*code"],
                        min_length=20, max_length=4000, skip_forwards=True, skip_ads=True),
    )  # fmt: skip
    rss_before = peak_rss_mb()
    if args.tracemalloc:
        tracemalloc.start()

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "contentq.db")
        index = DedupIndex(args.threshold, window_days=30)
        ingestor = Ingestor(route, index)
        if args.footers:  # each channel's footer learned from its first 50 posts, as an import learns it
            for source in SOURCES:
                first = [c.html for c, _ in posts if c.source == source][:50]
                ingestor.use_footer(source, learn(first))
        counts = Counts()
        found = {kind: Counts() for kind in planted}
        started = time.perf_counter()
        for start in range(0, len(posts), args.batch):
            with store.transaction() as conn:
                index.refresh(conn)
                for candidate, kind in posts[start : start + args.batch]:
                    outcome = ingestor.ingest(conn, candidate)
                    counts.add(outcome)
                    found[kind].add(outcome)
        elapsed = time.perf_counter() - started

        print(f"\ningested {len(posts):,} posts in {elapsed:.1f} s: {len(posts) / elapsed:,.0f} posts/s")
        print(f"stored: {counts.collected:,} collected, {counts.duplicate:,} duplicate, {counts.filtered:,} filtered")
        for kind in ("exact", "near"):
            hit = found[kind].duplicate
            share = hit / max(1, planted[kind])
            print(f"planted {kind:5} copies: {planted[kind]:,}, found as duplicates: {hit:,} ({share:.1%})")
        print(f"threshold {args.threshold}; footers stripped from {counts.footer_stripped:,} posts")
        for kind in ("unique", "template"):
            print(f"{kind} posts taken for duplicates: {found[kind].duplicate:,} of {planted[kind]:,}")

        print(f"peak RSS after ingest: {peak_rss_mb():,.0f} MiB (before: {rss_before:,.0f} MiB, the synthetic posts)")
        del ingestor, index
        gc.collect()
        fresh = DedupIndex(args.threshold, window_days=30)
        t0 = time.perf_counter()
        loaded = fresh.refresh(store.conn)
        load_s = time.perf_counter() - t0
        print(f"index loaded from SQLite as a new worker does: {loaded:,} posts in {load_s:.1f} s")
        store.close()

    if args.tracemalloc:
        _, peak = tracemalloc.get_traced_memory()
        print(f"peak Python heap (tracemalloc): {peak / 2**20:,.0f} MiB")
    print(f"peak RSS at the end: {peak_rss_mb():,.0f} MiB")


if __name__ == "__main__":
    main()
