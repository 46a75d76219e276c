"""Duplicate detection across donor channels.

Three levels, cheapest first:
- exact: the same (source, message id) was stored before (the posts table's UNIQUE key; see ingest.py);
- content: the same normalised text and the same media bytes (a content hash), from any channel;
- near: the same news lightly edited, from another channel: MinHash signatures of character 5-grams of
  the normalised text in a datasketch MinHashLSH index, confirmed by the estimated Jaccard similarity
  >= the threshold (settings.near_duplicate_threshold).

The index lives in memory, loaded once per process from the posts table (content_hash, minhash columns)
and caught up with `refresh()` before each use, so posts written by other processes are seen too. Every
post is remembered, whatever its state: a rejected or filtered post still makes its copies duplicates.
"""

from __future__ import annotations

import hashlib
import operator
import re
import sqlite3
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from contentq.clock import iso

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
"""The LSH index bands only the first LSH_PERM values of a signature, weighted to miss few near duplicates
(at 0.65: 16 bands of 4 rows, 96 % recall at the threshold, 99 % at +0.05) while keeping the index small
(memory grows with the number of bands). All NUM_PERM values then confirm a candidate's similarity."""

NUMBERS_CHECKED_BELOW = 0.8
"""A near match less similar than this must also share its numbers (see `numbers_agree`): below it, two posts of
one fixed form ("dollar 89.45, euro 97.12 …") from two channels would pass for copies although their news differ."""

MAX_NUMBERS = 32
"""Numbers of a post remembered for that check."""

SEED = 1
SCHEME = "affine32"
PRUNE_EVERY_S = 3600.0
"""How often a long-lived process forgets posts older than the dedup window."""

_LINK = re.compile(r"(?i)(?:\bhttps?://|\bwww\.|\b(?:t|telegram)\.me/)\S+")
_MENTION = re.compile(r"@\w+")
_WORD = re.compile(r"\w+")


def normalize_text(text: str) -> str:
    """Plain text reduced to what makes two posts the same: lower case words, no links or @mentions."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _LINK.sub(" ", text)
    text = _MENTION.sub(" ", text)
    return " ".join(_WORD.findall(text))


def numbers_of(normalized: str) -> tuple[str, ...]:
    """The numbers of a normalised text ('89.45' gives '89' and '45'), sorted, without repeats."""
    return tuple(sorted({w for w in normalized.split() if w.isdigit()}))[:MAX_NUMBERS]


def numbers_agree(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether two posts' numbers allow them to be the same news: at least half of them in common, or no
    numbers on one side (a rewording may spell a number out)."""
    if not a or not b:
        return True
    common = len(set(a) & set(b))
    return common * 2 >= len(set(a) | set(b))


def content_hash(normalized: str, media_hashes: Sequence[str] = ()) -> str | None:
    """SHA-256 of the normalised text and the media hashes (order-free); None when there is nothing."""
    if not normalized and not media_hashes:
        return None
    digest = hashlib.sha256(normalized.encode())
    for media in sorted(media_hashes):
        digest.update(b"\x00" + media.encode())
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
    """Computes MinHash signatures with datasketch; the permutations are generated once and shared."""

    def __init__(self, num_perm: int = NUM_PERM) -> None:
        self.num_perm = num_perm
        self._permutations = MinHash(num_perm=num_perm, seed=SEED, scheme=SCHEME).permutations

    def signature(self, normalized: str) -> np.ndarray | None:
        hashes = shingle_hashes(normalized)
        if not len(hashes):
            return None
        # The shingles arrive hashed: datasketch only permutes them (operator.index: the fastest identity).
        sketch = MinHash(num_perm=self.num_perm, seed=SEED, permutations=self._permutations, scheme=SCHEME,
                         hashfunc=operator.index)  # fmt: skip
        sketch.update_batch(hashes.tolist())
        values: np.ndarray = sketch.hashvalues
        return values


@dataclass(frozen=True)
class Fingerprint:
    content_hash: str | None
    signature: np.ndarray | None = None
    numbers: tuple[str, ...] = ()  # numbers_of the text: the posts.numbers column, space-separated

    @cached_property
    def sketch(self) -> LeanMinHash | None:
        """The signature as datasketch wants it for the LSH index."""
        if self.signature is None:
            return None
        return LeanMinHash(seed=SEED, hashvalues=self.signature, scheme=SCHEME)

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


def lsh_bands(threshold: float) -> tuple[int, int]:
    """(bands, rows) for the threshold, as datasketch computes them for LSH_PERM permutations."""
    probe = MinHashLSH(threshold=threshold, num_perm=LSH_PERM, weights=LSH_WEIGHTS)
    return probe.b, probe.r


def _epoch(value: str | None) -> float:
    if not value:
        return time.time()
    return datetime.fromisoformat(value).timestamp()


class DedupIndex:
    """Content hashes and an LSH index of every post within the dedup window."""

    def __init__(self, threshold: float, window_days: float | None = None, num_perm: int = NUM_PERM) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("near_duplicate_threshold must be in (0, 1]")
        self.threshold = threshold
        self.window_s = window_days * 86400 if window_days else None
        self.hasher = MinHasher(num_perm)
        self.num_perm = num_perm
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=lsh_bands(threshold))
        self._by_hash: dict[str, tuple[int, float]] = {}  # content hash → (original post, when)
        self._seen: set[int] = set()
        self._row_of: dict[int, int] = {}  # post id → row of the signature table
        self._signatures = np.zeros((1024, num_perm), dtype=np.uint32)
        self._sources: list[str] = []
        self._times: list[float] = []
        self._numbers: list[tuple[str, ...]] = []
        self._loaded_up_to = 0
        self._pruned_at = time.time()

    # -- building --------------------------------------------------------------------------------

    def fingerprint(self, normalized: str, media_hashes: Sequence[str] = ()) -> Fingerprint:
        signature = self.hasher.signature(normalized)
        numbers = numbers_of(normalized) if signature is not None else ()
        return Fingerprint(content_hash(normalized, media_hashes), signature, numbers)

    def refresh(self, conn: sqlite3.Connection) -> int:
        """Load posts written since the last refresh (by any process); returns how many."""
        cutoff = self._cutoff()
        since = iso(datetime.fromtimestamp(cutoff, UTC)) if cutoff else ""
        cursor = conn.execute(
            "SELECT id, source, state, duplicate_of, content_hash, minhash, collected_at, numbers FROM posts"
            " WHERE id > ? AND collected_at >= ? ORDER BY id",
            (self._loaded_up_to, since),
        )
        loaded = 0
        for post_id, source, state, duplicate_of, chash, blob, collected_at, numbers in cursor:
            self._loaded_up_to = max(self._loaded_up_to, post_id)
            if post_id in self._seen:
                continue
            original = (duplicate_of or post_id) if state == "duplicate" else None
            fp = Fingerprint(chash, signature_from_blob(blob, self.num_perm), tuple((numbers or "").split()))
            self.add(post_id, fp, source or "", collected_at=_epoch(collected_at), original=original)
            loaded += 1
        if time.time() - self._pruned_at > PRUNE_EVERY_S:
            self.prune()
        return loaded

    def add(
        self, post_id: int, fp: Fingerprint, source: str, *, collected_at: float | None = None,
        original: int | None = None,
    ) -> None:  # fmt: skip
        """Remember a stored post; a duplicate (`original` set) only maps its hash to that original."""
        if post_id in self._seen:
            return
        self._seen.add(post_id)
        if post_id == self._loaded_up_to + 1:
            # The next row after what refresh() read: written by this process inside the same write
            # transaction (ids are handed out in order), so the next refresh need not read it back.
            self._loaded_up_to = post_id
        when = collected_at if collected_at is not None else time.time()
        if fp.content_hash is not None:
            self._by_hash.setdefault(fp.content_hash, (original or post_id, when))
        if original is not None or fp.signature is None:
            return
        row = len(self._sources)
        if row >= len(self._signatures):
            self._signatures = np.concatenate([self._signatures, np.zeros_like(self._signatures)])
        self._signatures[row] = fp.signature
        self._sources.append(source)
        self._times.append(when)
        self._numbers.append(fp.numbers)
        self._row_of[post_id] = row
        self._lsh.insert(post_id, fp.sketch, check_duplication=False)

    # -- looking up ------------------------------------------------------------------------------

    def match(self, fp: Fingerprint, source: str) -> Match | None:
        """The earlier post this one duplicates, or None."""
        cutoff = self._cutoff()
        if fp.content_hash is not None:
            found = self._by_hash.get(fp.content_hash)
            if found is not None and found[1] >= cutoff:
                return Match(found[0], "content", 1.0)
        if fp.signature is None:
            return None
        best: Match | None = None
        for candidate in self._lsh.query(fp.sketch):
            row = self._row_of.get(candidate)
            if row is None or self._sources[row] == source or self._times[row] < cutoff:
                continue  # near duplicates count across channels only: a channel's own series look alike
            similarity = float(np.count_nonzero(self._signatures[row] == fp.signature)) / self.num_perm
            if similarity < self.threshold:
                continue
            if similarity < NUMBERS_CHECKED_BELOW and not numbers_agree(self._numbers[row], fp.numbers):
                continue
            if best is None or (similarity, -candidate) > (best.similarity, -best.post_id):
                best = Match(candidate, "near", similarity)
        return best

    def __len__(self) -> int:
        return len(self._seen)

    # -- housekeeping ----------------------------------------------------------------------------

    def prune(self) -> None:
        """Forget posts older than the window (a long-lived worker would otherwise grow forever)."""
        self._pruned_at = time.time()
        cutoff = self._cutoff()
        if not cutoff:
            return
        self._by_hash = {h: v for h, v in self._by_hash.items() if v[1] >= cutoff}
        for post_id, row in list(self._row_of.items()):
            if self._times[row] < cutoff:
                self._lsh.remove(post_id)
                del self._row_of[post_id]

    def _cutoff(self) -> float:
        return time.time() - self.window_s if self.window_s else 0.0
