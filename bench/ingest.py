"""Ingest throughput and memory: synthetic posts through dedup (content hash, MinHash LSH) and filters into SQLite.

    python bench/ingest.py [--posts 100000] [--batch 1000] [--threshold 0.65] [--footers]

77 % of the posts are unique (half of them with a few numbers, 3 % spam for the filters), 10 % exact
copies of an earlier post from another channel (other case, punctuation, links), 10 % near copies (two to
four words changed, a footer sentence added), 3 % template posts (a daily exchange-rate line from several
channels: same words, other numbers; different news, so any duplicate found among them is a false
positive). With --footers every channel ends its posts with its own footer line, learned per channel
(content/footer.py) from its first posts and stripped before dedup, as an import does. Every post is
stored as a row of a real SQLite database (one transaction per batch, as an import does).

The posts are generated as they are ingested (a unique post's text is rebuilt from its number when a copy
of it is planted), so the process's memory is the ingest path's own. Prints posts/s, peak RSS, RSS growth
between the middle and the end of the run, the time a new worker (new connection, new index) takes to give
its first answer, and what dedup found against what was planted.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contentq.content.dedup import DedupIndex  # noqa: E402
from contentq.content.footer import learn  # noqa: E402
from contentq.intake.ingest import Candidate, Ingestor  # noqa: E402
from contentq.routes import Filters, Route  # noqa: E402
from contentq.settings import Settings  # noqa: E402
from contentq.store import Store, open_store  # noqa: E402

SOURCES = [f"@donor_{i:02d}" for i in range(20)]
SEED = 7


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(size)]


def footer_of(source: str) -> str:
    return f'\n\nSubscribe: @{source[1:]} | <a href="https://t.me/{source[1:]}_chat">our chat</a>'


def unique_text(number: int, words: list[str]) -> str:
    """The text of unique post `number`, the same every time it is asked for."""
    rng = random.Random(SEED * 1_000_003 + number)
    text = " ".join(rng.choice(words) for _ in range(rng.randint(50, 110))).capitalize() + "."
    if rng.random() < 0.5:  # numbers, which near copies keep (unless an edit hits one)
        text += " In figures: " + ", ".join(str(rng.randint(2, 9999)) for _ in range(rng.randint(1, 4))) + "."
    if rng.random() < 0.03:  # spam the route's filters catch
        text += rng.choice([" Big casino bonus today.", " Subscribe to @rival_channel now!"])
    return text


def make_posts(n: int, footers: bool = False) -> Iterator[tuple[Candidate, str]]:
    """(candidate, planted kind) pairs, generated one by one; kinds: unique, exact, near, template."""
    rng = random.Random(SEED)
    words = vocabulary(rng)
    originals = array("l")  # post number * len(SOURCES) + source: the unique posts, 8 bytes each
    for i in range(n):
        roll = rng.random()
        if roll > 0.97:
            kind, source = "template", rng.randrange(len(SOURCES))
            text = (
                f"Exchange rates for day {rng.randint(1, 365)}: dollar {rng.uniform(80, 100):.2f}, euro "
                f"{rng.uniform(90, 110):.2f}, yuan {rng.uniform(10, 14):.2f} roubles, as set by the central bank"
            )
        elif originals and roll < 0.10:
            number, source = divmod(rng.choice(originals), len(SOURCES))
            kind = "exact"
            text = unique_text(number, words).upper() + "!!! https://t.me/" + rng.choice(SOURCES)[1:]
        elif originals and roll < 0.20:
            number, source = divmod(rng.choice(originals), len(SOURCES))
            kind = "near"
            tokens = unique_text(number, words).split()
            for _ in range(rng.randint(2, 4)):
                tokens[rng.randrange(len(tokens))] = rng.choice(words)
            text = " ".join(tokens) + " Subscribe to our channel for more news."
        else:
            kind, source = "unique", rng.randrange(len(SOURCES))
            text = unique_text(i, words)
            originals.append(i * len(SOURCES) + source)
        if kind in ("exact", "near"):  # copied by another channel
            source = (source + rng.randrange(1, len(SOURCES))) % len(SOURCES)
        post_source = SOURCES[source]
        html = f"<b>{text[:30]}</b>{text[30:]}" if i % 3 == 0 else text
        if footers:
            html += footer_of(post_source)
        yield Candidate(post_source, [i + 1], html, datetime.now(UTC)), kind


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mib() -> float:
    """The resident set now (VmRSS), which unlike the peak can go down."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="posts per transaction")
    parser.add_argument("--threshold", type=float, default=Settings.model_fields["near_duplicate_threshold"].default)
    parser.add_argument("--footers", action="store_true", help="every channel's posts end with its own footer")
    args = parser.parse_args()

    route = Route(
        name="bench", target="@mine", sources=SOURCES, rewriter="none",
        filters=Filters(stop_words=["casino", "giveaway", "crypto pump"], regexes=[r"(?i)promo\s*code"],
                        min_length=20, max_length=4000, skip_forwards=True, skip_ads=True),
    )  # fmt: skip
    planted = {"unique": 0, "exact": 0, "near": 0, "template": 0}
    # Tallies only (a Counts would keep every near duplicate in a list, and this bench measures memory).
    found: Counter[tuple[str, str]] = Counter()  # (planted kind, outcome state)
    footers_stripped = 0
    middle = args.posts // 2
    rss_middle = 0.0

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "contentq.db")
        index = DedupIndex(args.threshold, window_days=30)
        ingestor = Ingestor(route, index)
        if args.footers:  # each channel's footer learned from its first 50 posts, as an import learns it
            firsts: dict[str, list[str]] = {s: [] for s in SOURCES}
            for candidate, _ in make_posts(min(args.posts, 5000), footers=True):
                firsts[candidate.source].append(candidate.html)
            for source in SOURCES:
                ingestor.use_footer(source, learn(firsts[source][:50]))
        index.refresh(store.conn)
        rss_start = rss_mib()
        print(f"ingesting {args.posts:,} synthetic posts (RSS at the start: {rss_start:,.0f} MiB) …", flush=True)
        posts = make_posts(args.posts, footers=args.footers)
        elapsed = cpu = 0.0
        done = 0
        while done < args.posts:
            batch = list(islice(posts, args.batch))  # generated outside the clock
            started, started_cpu = time.perf_counter(), time.process_time()
            with store.transaction() as conn:
                index.refresh(conn)
                outcomes = [ingestor.ingest(conn, candidate) for candidate, _ in batch]
            elapsed += time.perf_counter() - started
            cpu += time.process_time() - started_cpu
            for (_, kind), outcome in zip(batch, outcomes, strict=True):
                found[kind, "duplicate" if outcome.state == "exact" else outcome.state] += 1
                footers_stripped += outcome.footer_stripped
                planted[kind] += 1
            done += len(batch)
            del batch, outcomes
            if done == middle:
                rss_middle = rss_mib()
        rss_end = rss_mib()

        print(
            f"\ningested {done:,} posts in {elapsed:.1f} s: {done / elapsed:,.0f} posts/s"
            f" ({done / cpu:,.0f} posts per CPU second: what the machine's load does not change)"
        )
        states = Counter[str]()
        for (_, state), n in found.items():
            states[state] += n
        print(f"stored: {states['collected']:,} collected, {states['duplicate']:,} duplicate,"
              f" {states['filtered']:,} filtered")  # fmt: skip
        print(f"threshold {args.threshold}; footers stripped from {footers_stripped:,} posts")
        for kind in ("exact", "near"):
            hit = found[kind, "duplicate"]
            share = hit / max(1, planted[kind])
            print(f"recall on planted {kind:5} copies: {hit:,} of {planted[kind]:,} ({share:.1%})")
        false = found["unique", "duplicate"] + found["template", "duplicate"]
        print(f"false positives: {false:,} (unique posts {found['unique', 'duplicate']:,} of {planted['unique']:,},"
              f" template posts {found['template', 'duplicate']:,} of {planted['template']:,})")  # fmt: skip
        print(f"peak RSS: {peak_rss_mib():,.0f} MiB; RSS growth from {middle:,} to {done:,} posts:"
              f" {rss_end - rss_middle:+,.1f} MiB ({rss_middle:,.0f} → {rss_end:,.0f} MiB)")  # fmt: skip

        # A new worker: its own connection and index, ready when it has answered its first lookup.
        first, _ = next(make_posts(1))
        probe = Candidate("@another", [1], first.html + " Updated at noon.", datetime.now(UTC))  # a near copy
        t0 = time.perf_counter()
        other = Store(Path(tmp) / "contentq.db")
        fresh = DedupIndex(args.threshold, window_days=30)
        with other.transaction() as conn:
            built = fresh.refresh(conn)
            outcome = Ingestor(route, fresh).ingest(conn, probe)
        ready_s = time.perf_counter() - t0
        print(f"new worker ready: first answer ({outcome.state}) in {ready_s:.3f} s, {built:,} posts loaded or built")
        other.close()
        store.close()


if __name__ == "__main__":
    main()
