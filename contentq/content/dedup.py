"""Duplicate detection across donor channels.

Three levels, cheapest first:
- exact: the same (source, message id) was stored before (the posts table's UNIQUE key; see ingest.py);
- content: the same normalised text, the same media bytes and the same links (a content hash, the indexed
  posts.content_hash column), from any channel: a post that differs only in its link is another post;
- near: the same news lightly edited, from another channel: MinHash signatures of character 5-grams of
  the normalised text, found through LSH bands kept in SQLite (the dedup_bands table) and confirmed by the
  estimated Jaccard similarity >= the threshold (settings.near_duplicate_threshold), when their links agree
  (one in common, or none on one side).

Everything the index knows is in SQLite, written in the transaction that stores the post: a worker keeps
nothing in memory that grows with the corpus, a new worker checks at once, and posts written by other
processes are seen as soon as they commit. Every post is remembered, whatever its state: a rejected or
filtered post still makes its copies duplicates.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

import numpy as np

from contentq.clock import iso
from contentq.content.html import collect_links, normalize_link

NUM_PERM = 128
"""MinHash permutations: 128 keeps the similarity estimate within about ±0.04 of the truth."""

SHINGLE_CHARS = 5
"""Near duplicates compare sets of character 5-grams: a changed word changes a few of hundreds."""

SIGNATURE_CHARS = 2000
"""Only the beginning of a long text is signed: near duplicates share it, and signing stays fast."""

NEAR_MIN_WORDS = 8
"""Shorter texts are compared by content hash only: a near match between two one-liners means little."""

LSH_PERM = 64
LSH_WEIGHTS = (0.05, 0.95)
"""The LSH bands cover the first LSH_PERM values of a signature, weighted to miss few near duplicates
(at 0.65: 16 bands of 4 rows, 96 % recall at the threshold, 99 % at +0.05) while keeping the band table
small (it grows with the number of bands). All NUM_PERM values then confirm a candidate's similarity."""

SLOTS = 64
"""dedup_bands.slot is post id * SLOTS + band number: a post's rows are together, pruned by one range."""

MAX_CANDIDATES = 64
"""Candidates confirmed per lookup, those sharing the most bands first: a post of a fixed form (a daily rate
line) shares bands with every earlier one, and its copy, if any, shares the most."""

NUMBERS_CHECKED_BELOW = 0.8
"""A near match less similar than this must also share its numbers (see `numbers_agree`): below it, two posts of
one fixed form ("dollar 89.45, euro 97.12 …") from two channels would pass for copies although their news differ."""

MAX_NUMBERS = 32
"""Numbers of a post remembered for that check."""

SEED = 1
SCHEME = "affine32"
KEYS = "ms32"
"""How band keys are made (band_keys): part of the layout, so a change rebuilds the band table."""
PAGE_CACHE_KIB = 32768
"""SQLite page cache of a connection the index is used on (SQLite's default is 2 MiB): lookups and inserts land
at random in the band and content-hash indexes, and 32 MiB keeps those of about 100,000 posts in memory (12 % more
posts/s at 100,000). Memory grows to it and no further, whatever the corpus."""

PRUNE_EVERY_S = 3600.0
"""How often a long-lived process deletes the bands of posts older than the dedup window."""

_LINK = re.compile(r"(?i)(?:\bhttps?://|\bwww\.|\b(?:t|telegram)\.me/)\S+")
_MENTION = re.compile(r"@\w+")
_WORD = re.compile(r"\w+")


def normalize_text(text: str) -> str:
    """Plain text reduced to what makes two posts the same: lower case words, no links or @mentions."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _LINK.sub(" ", text)
    text = _MENTION.sub(" ", text)
    return " ".join(_WORD.findall(text))


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def numbers_of(text: str) -> tuple[str, ...]:
    """The numbers of a text, sorted, without repeats; decimals stay whole ('89,45' and '89.45' give '89.45'),
    so two rates that share only their whole part do not count as the same number."""
    found = {n.replace(",", ".") for n in _NUMBER.findall(unicodedata.normalize("NFKC", text))}
    return tuple(sorted(found))[:MAX_NUMBERS]


def numbers_agree(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether two posts' numbers allow them to be the same news: at least half of them in common, or no
    numbers on one side (a rewording may spell a number out)."""
    if not a or not b:
        return True
    common = len(set(a) & set(b))
    return common * 2 >= len(set(a) | set(b))


_TRACKING = re.compile(r"(?i)^(?:utm_\w*|fbclid|gclid|yclid|ysclid|mc_cid|mc_eid|igshid|erid|ref|ref_src|from)$")
_TELEGRAM = re.compile(r"(?i)^(?:t|telegram)\.me(?:/|$)")


def content_links(links: Iterable[str]) -> tuple[str, ...]:
    """The links that are part of a post's content, comparable: sorted, without repeats, no scheme or 'www.',
    without tracking parameters (utm_*, fbclid, erid …) and without t.me links (a channel's own links and
    invites say whose post it is, not what it says; two channels copying one story each link themselves)."""
    out: set[str] = set()
    for link in links:
        normalized = normalize_link(link)
        if not normalized or _TELEGRAM.match(normalized):
            continue
        base, _, query = normalized.partition("?")
        kept = [p for p in query.split("&") if p and not _TRACKING.match(p.split("=", 1)[0])]
        out.add(base.rstrip("/") + ("?" + "&".join(kept) if kept else ""))
    return tuple(sorted(out))


def links_agree(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two posts' content links allow them to be the same post: one in common, or none on one side
    (a copy may drop the link). Two posts that differ only in their link (episode 1, episode 2) do not."""
    return not a or not b or bool(set(a) & set(b))


def content_hash(normalized: str, media_hashes: Sequence[str] = (), links: Sequence[str] = ()) -> str | None:
    """SHA-256 of the normalised text, the media hashes and the content links (order-free); None when there is
    nothing. A post without links hashes as it did before links counted."""
    if not normalized and not media_hashes and not links:
        return None
    digest = hashlib.sha256(normalized.encode())
    for media in sorted(media_hashes):
        digest.update(b"\x00" + media.encode())
    for link in sorted(links):
        digest.update(b"\x01" + link.encode())
    return digest.hexdigest()


_FNV_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def shingle_hashes(normalized: str) -> np.ndarray:
    """32-bit hashes of the character 5-grams (none for short texts), computed in one numpy pass.

    A 64-bit polynomial hash of the code points, scrambled with the SplitMix64 finaliser (a plain polynomial
    hash biases MinHash estimates low), upper 32 bits kept. Stored signatures depend on it: do not change it.
    """
    if normalized.count(" ") + 1 < NEAR_MIN_WORDS:
        return np.empty(0, dtype=np.uint32)
    points = np.frombuffer(normalized[:SIGNATURE_CHARS].encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    count = len(points) - SHINGLE_CHARS + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint32)
    z = np.zeros(count, dtype=np.uint64)
    for offset in range(SHINGLE_CHARS):
        z = z * _FNV_PRIME + points[offset : offset + count]
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(32)).astype(np.uint32)  # repeats are harmless: a minimum ignores them


class MinHasher:
    """MinHash signatures, vectorised with numpy.

    The permutations are datasketch's "affine32" scheme (seed 1), reproduced bit for bit so the signatures
    stored by earlier versions (posts.minhash) stay comparable: each 32-bit shingle hash is pre-mixed with the
    MurmurHash3 finaliser, then permuted as a·h + b mod 2^32 (a odd), and the signature keeps each minimum.
    """

    def __init__(self, num_perm: int = NUM_PERM) -> None:
        self.num_perm = num_perm
        gen = np.random.RandomState(SEED)  # the legacy generator: its stream is stable across numpy versions
        self._a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self._b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)

    def signature(self, normalized: str) -> np.ndarray | None:
        h = shingle_hashes(normalized)
        if not len(h):
            return None
        h ^= h >> _S16  # MurmurHash3 fmix32, in place (uint32 products wrap, as intended)
        h *= _FMIX1
        h ^= h >> _S13
        h *= _FMIX2
        h ^= h >> _S16
        permuted = np.multiply.outer(h, self._a)
        permuted += self._b
        signature: np.ndarray = permuted.min(axis=0)
        return signature


_S13, _S16 = np.uint32(13), np.uint32(16)
_FMIX1, _FMIX2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)


@dataclass(frozen=True)
class Fingerprint:
    content_hash: str | None
    signature: np.ndarray | None = None
    numbers: tuple[str, ...] = ()  # numbers_of the text: the posts.numbers column, space-separated
    band_keys: list[int] | None = None  # of the signature, for the index's layout (DedupIndex.fingerprint)
    links: tuple[str, ...] = ()  # content_links of the post (part of content_hash; checked on near matches)

    def minhash_blob(self) -> bytes | None:
        """What the posts.minhash column keeps: the signature as little-endian uint32."""
        return None if self.signature is None else self.signature.astype("<u4").tobytes()


def signature_from_blob(blob: bytes | None, num_perm: int = NUM_PERM) -> np.ndarray | None:
    if not blob or len(blob) != num_perm * 4:
        return None  # absent, or written with another number of permutations: compare by hash only
    return np.frombuffer(blob, dtype="<u4").astype(np.uint32)


@dataclass(frozen=True)
class Match:
    post_id: int
    how: Literal["content", "near"]
    similarity: float

    def reason(self) -> str:
        if self.how == "content":
            return f"same content as post {self.post_id}"
        return f"near duplicate of post {self.post_id} (similarity {self.similarity:.2f})"


@lru_cache(maxsize=16)
def lsh_bands(threshold: float) -> tuple[int, int]:
    """(bands, rows) over LSH_PERM values minimising the weighted chances of a false candidate (similarity below
    the threshold) and of a missed one (above it); the optimum datasketch's MinHashLSH picks."""
    below = np.linspace(0.0, threshold, 1001)
    above = np.linspace(threshold, 1.0, 1001)
    best, best_error = (1, 1), float("inf")
    for bands in range(1, LSH_PERM + 1):
        for rows in range(1, LSH_PERM // bands + 1):
            false_pos = np.trapezoid(1 - (1 - below**rows) ** bands, below)
            false_neg = np.trapezoid((1 - above**rows) ** bands, above)
            error = float(false_pos * LSH_WEIGHTS[0] + false_neg * LSH_WEIGHTS[1])
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """32-bit keys (as int32, what SQLite stores in 4 bytes) of each signature's bands: shape (n, bands) for
    (n, NUM_PERM).

    Multiply-shift hashing of each band's values with random 64-bit multipliers drawn for this layout and
    band: bands of another layout or number do not meet. Two bands of other values share a key about once in
    4 billion, and a shared key only makes a candidate, which the whole signature then confirms or not.
    Stored keys depend on it: do not change it."""
    multipliers, offsets = _band_hash(bands, rows)
    values = signatures[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
    values *= multipliers
    keys = values.sum(axis=2, dtype=np.uint64)
    keys += offsets
    keys >>= np.uint64(32)
    out: np.ndarray = keys.astype(np.uint32).view(np.int32)
    return out


@lru_cache(maxsize=16)
def _band_hash(bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.RandomState(bands * SLOTS + rows)

    def draw(*shape: int) -> np.ndarray:
        drawn: np.ndarray = gen.randint(0, 1 << 32, (*shape, 2), dtype=np.uint64)
        return drawn

    multipliers, offsets = draw(bands, rows), draw(bands)
    multipliers = (multipliers[..., 0] << np.uint64(32)) | multipliers[..., 1] | np.uint64(1)
    return multipliers, (offsets[..., 0] << np.uint64(32)) | offsets[..., 1]


_since_cache: tuple[float, float | None, str] = (0.0, None, "")


def _grow_page_cache(conn: sqlite3.Connection) -> None:
    size = int(conn.execute("PRAGMA cache_size").fetchone()[0])  # negative: KiB; positive: pages
    kib = -size if size < 0 else size * int(conn.execute("PRAGMA page_size").fetchone()[0]) // 1024
    if kib < PAGE_CACHE_KIB:
        conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")


def _since(window_s: float | None) -> str:
    """The oldest collected_at inside the window (as stored: ISO text); recomputed once a second at most."""
    global _since_cache
    if not window_s:
        return ""
    at, window, since = _since_cache
    now = time.time()
    if window != window_s or now - at > 1.0:
        since = iso(datetime.fromtimestamp(now - window_s, UTC))
        _since_cache = (now, window_s, since)
    return since


class DedupIndex:
    """Content and near-duplicate lookups against the posts of the dedup window, all in SQLite.

    Holds only settings: the band table (dedup_bands) and the posts' own columns (content_hash, minhash,
    numbers) are the index, written by `add` in the caller's transaction."""

    def __init__(self, threshold: float, window_days: float | None = None, num_perm: int = NUM_PERM) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("near_duplicate_threshold must be in (0, 1]")
        self.threshold = threshold
        self.window_s = window_days * 86400 if window_days else None
        self.hasher = MinHasher(num_perm)
        self.num_perm = num_perm
        self.bands, self.rows = lsh_bands(threshold)
        self.layout = f"{self.bands}x{self.rows}/{SCHEME}/{KEYS}"
        self._ready = False
        self._pruned_at = 0.0
        marks = ", ".join("?" for _ in range(self.bands))
        pairs = ", ".join("(?, ?)" for _ in range(self.bands))
        self._insert_sql = f"INSERT INTO dedup_bands (slot, key) VALUES {pairs}"  # one statement a post
        # The posts sharing the most bands first; a post's own channel is left out (near duplicates count
        # across channels only: a channel's own series look alike).
        self._candidates_sql = (
            "SELECT p.id, p.minhash, p.numbers FROM (SELECT slot / ? AS post_id, COUNT(*) AS hits FROM dedup_bands"
            f" WHERE key IN ({marks}) GROUP BY post_id) c JOIN posts p ON p.id = c.post_id"
            " WHERE p.source IS NOT ? AND p.collected_at >= ? ORDER BY c.hits DESC, p.id LIMIT ?"
        )

    # -- building --------------------------------------------------------------------------------

    def fingerprint(
        self, normalized: str, media_hashes: Sequence[str] = (), *, text: str | None = None, links: Sequence[str] = ()
    ) -> Fingerprint:
        """`text`, the post's plain text before normalising, gives the numbers their decimals (numbers_of);
        `links` are its content_links."""
        chash = content_hash(normalized, media_hashes, links)
        signature = self.hasher.signature(normalized)
        if signature is None:
            return Fingerprint(chash, links=tuple(links))
        keys = band_keys(signature[None, :], self.bands, self.rows)[0].tolist()
        numbers = numbers_of(text if text is not None else normalized)
        return Fingerprint(chash, signature, numbers, keys, tuple(links))

    def refresh(self, conn: sqlite3.Connection) -> int:
        """Make the index ready on this connection: the first time, give the connection a PAGE_CACHE_KIB page
        cache and check the band table was built with this layout (rebuild it from the posts' signatures if
        not: a new install or a new threshold); inside a
        write transaction, delete the bands that left the window once an hour. Returns the posts indexed now."""
        built = 0
        if not self._ready:
            _grow_page_cache(conn)
            built = self._check_layout(conn)
        if conn.in_transaction and time.time() - self._pruned_at > PRUNE_EVERY_S:
            self.prune(conn)
        return built

    def add(self, conn: sqlite3.Connection, post_id: int, fp: Fingerprint, *, original: int | None = None) -> None:
        """Index a post just stored (in the caller's transaction). A duplicate (`original` set) is found
        through its content hash only: its copies are duplicates of the original, not of it."""
        if original is not None or fp.signature is None:
            return
        self.refresh(conn)
        keys = self._keys(fp)
        base = post_id * SLOTS
        params: list[int] = []
        for band, key in enumerate(keys):
            params += (base + band, key)
        conn.execute(self._insert_sql, params)

    # -- looking up ------------------------------------------------------------------------------

    def match(self, conn: sqlite3.Connection, fp: Fingerprint, source: str) -> Match | None:
        """The earlier post (within the window) this one duplicates, or None."""
        self.refresh(conn)
        since = _since(self.window_s)
        if fp.content_hash is not None:
            row = conn.execute(
                "SELECT id, state, duplicate_of FROM posts WHERE content_hash = ? AND collected_at >= ?"
                " ORDER BY id LIMIT 1",
                (fp.content_hash, since),
            ).fetchone()
            if row is not None:
                original = (row[2] or row[0]) if row[1] == "duplicate" else row[0]
                return Match(int(original), "content", 1.0)
        if fp.signature is None:
            return None
        keys = self._keys(fp)
        rows = conn.execute(self._candidates_sql, [SLOTS, *keys, source, since, MAX_CANDIDATES]).fetchall()
        rows = [r for r in rows if r[1] is not None and len(r[1]) == self.num_perm * 4]
        if not rows:
            return None
        stored = np.frombuffer(b"".join(r[1] for r in rows), dtype="<u4").reshape(len(rows), self.num_perm)
        similarities = np.count_nonzero(stored == fp.signature, axis=1) / self.num_perm
        best: Match | None = None
        for (post_id, _, numbers), similarity in zip(rows, similarities.tolist(), strict=True):
            if similarity < self.threshold:
                continue
            if similarity < NUMBERS_CHECKED_BELOW and not numbers_agree(tuple((numbers or "").split()), fp.numbers):
                continue
            if best is None or (similarity, -post_id) > (best.similarity, -best.post_id):
                if fp.links and not links_agree(fp.links, self._links_of(conn, post_id)):
                    continue  # the same words around another link: another post
                best = Match(post_id, "near", similarity)
        return best

    @staticmethod
    def _links_of(conn: sqlite3.Connection, post_id: int) -> tuple[str, ...]:
        """A stored post's content links, read from its text (only for a near match, which is rare)."""
        row = conn.execute("SELECT text_html FROM posts WHERE id = ?", (post_id,)).fetchone()
        return content_links(collect_links(row[0] or "")) if row is not None else ()

    def _keys(self, fp: Fingerprint) -> list[int]:
        if fp.band_keys is not None and len(fp.band_keys) == self.bands:
            return fp.band_keys
        assert fp.signature is not None
        keys: list[int] = band_keys(fp.signature[None, :], self.bands, self.rows)[0].tolist()
        return keys

    # -- housekeeping ----------------------------------------------------------------------------

    def prune(self, conn: sqlite3.Connection, *, dry_run: bool = False) -> int:
        """Delete the bands of posts collected before the window (and of posts purged since); returns how
        many rows went (or would go, with dry_run). Post ids grow with collected_at, so that is every slot
        below the first post inside the window."""
        self._pruned_at = time.time()
        if not self.window_s:
            return 0
        oldest = conn.execute("SELECT slot FROM dedup_bands ORDER BY slot LIMIT 1").fetchone()
        if oldest is None:
            return 0
        first_inside = conn.execute(
            "SELECT MIN(id) FROM posts WHERE id >= ? AND collected_at >= ?",
            (oldest[0] // SLOTS, _since(self.window_s)),
        ).fetchone()[0]
        below = "" if first_inside is None else f" WHERE slot < {int(first_inside) * SLOTS}"  # else: every row
        if dry_run:
            return int(conn.execute("SELECT COUNT(*) FROM dedup_bands" + below).fetchone()[0])
        return conn.execute("DELETE FROM dedup_bands" + below).rowcount

    def _check_layout(self, conn: sqlite3.Connection) -> int:
        stored = conn.execute("SELECT value FROM dedup_state WHERE name = 'bands'").fetchone()
        if stored is not None and stored[0] == self.layout:
            self._ready = True
            return 0
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN IMMEDIATE")
        try:
            stored = conn.execute("SELECT value FROM dedup_state WHERE name = 'bands'").fetchone()
            built = 0 if stored is not None and stored[0] == self.layout else self._rebuild(conn)
        except BaseException:
            if own:
                conn.execute("ROLLBACK")
            raise
        if own:
            conn.execute("COMMIT")
        self._ready = True
        return built

    def _rebuild(self, conn: sqlite3.Connection) -> int:
        """Bands of every post of the window from its stored signature (a new install, a new threshold)."""
        conn.execute("DELETE FROM dedup_bands")
        cursor = conn.execute(
            "SELECT id, minhash FROM posts WHERE state != 'duplicate' AND minhash IS NOT NULL AND collected_at >= ?"
            " ORDER BY id",
            (_since(self.window_s),),
        )
        built = 0
        while rows := cursor.fetchmany(5000):
            chunk = [r for r in rows if len(r[1]) == self.num_perm * 4]  # other lengths: compared by hash only
            if not chunk:
                continue
            ids = np.array([r[0] for r in chunk], dtype=np.int64)
            signatures = np.frombuffer(b"".join(r[1] for r in chunk), dtype="<u4").reshape(len(chunk), -1)
            keys = band_keys(signatures, self.bands, self.rows)
            slots = ids[:, None] * SLOTS + np.arange(self.bands, dtype=np.int64)
            conn.executemany(
                "INSERT INTO dedup_bands (slot, key) VALUES (?, ?)",
                zip(slots.ravel().tolist(), keys.ravel().tolist(), strict=True),
            )
            built += len(chunk)
        conn.execute(
            "INSERT INTO dedup_state (name, value) VALUES ('bands', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (self.layout,),
        )
        return built
