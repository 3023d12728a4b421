#!/usr/bin/env python
"""
TLSH documents (python-threatexchange's tlsh extension, docs/hashing.md "Text and PDF"), through
the real code paths, in one process and without a database:

    python bench/bench_tlsh.py [--sizes 10000,100000] [--queries 100] [--text-bytes 1000]

1. hashing: texts per second through hashing.services.media_hash (content type `text`, as POST
   /h/hash runs it: UTF-8 decode, the decode slot, pytx's TextTLSHSignal), and PDFs per second
   (content type `pdf`: pdfminer.six's extraction of a 2-page PDF, then TLSH);
2. matching: for each size, that many TLSH hashes of random texts built into the index a matcher
   serves (matching.engine's kind for text_tlsh: the generic linear scan, with pytx's compare_hash
   and its threshold of 30) and the time of one lookup (engine search_many of one query), half of
   the queries near copies of banked texts (checked to be found), half unrelated.

Prints the 1-minute load average beside the figures: the box may be shared.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORDS = (
    "harbour market bread honey pottery band carousel lifeboat budget library parking school minutes "
    "treasurer accounts reserve roof quotes member chair river meadow lantern station ticket window "
    "garden letter winter summer morning evening bridge village council report meeting volunteer"
).split()


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SECRET_KEY", "omm-bench-not-secret")
    os.environ.setdefault("DJANGO_DEBUG", "false")
    os.environ.setdefault("OMM_LOG_LEVEL", "WARNING")
    os.environ["OMM_SIGNAL_TYPES"] = "threatexchange.extensions.tlsh.text_tlsh.TextTLSHSignal"
    os.environ["OMM_CONTENT_TYPES"] = (
        "threatexchange.content_type.text.TextContent,threatexchange.extensions.pdf.content.PDFContent"
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omm_project.settings")
    import django

    django.setup()


def random_text(chooser: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = chooser.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def edited(chooser: random.Random, text: str) -> str:
    """A light edit: three words replaced."""
    words = text.split(" ")
    for _ in range(3):
        words[chooser.randrange(len(words))] = chooser.choice(WORDS)
    return " ".join(words)


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def bench_hashing(count: int, size: int) -> None:
    from hashing.services import media_hash
    from tests.builders import pdf_bytes

    chooser = random.Random(1)
    texts = [random_text(chooser, size).encode() for _ in range(count)]
    start = time.perf_counter()
    for data in texts:
        media_hash(content_type="text", media=io.BytesIO(data))
    elapsed = time.perf_counter() - start
    print(f"hash text ({size} B):      {count / elapsed:10.0f} texts/s   load {load()}")
    pdfs = []
    for data in texts[:50]:
        lines = textwrap.wrap(data.decode(), 80)
        pdfs.append(pdf_bytes([lines[: len(lines) // 2], lines[len(lines) // 2 :]]))
    start = time.perf_counter()
    for data in pdfs:
        media_hash(content_type="pdf", media=io.BytesIO(data))
    elapsed = time.perf_counter() - start
    print(f"hash pdf (2 pages):      {len(pdfs) / elapsed:10.1f} PDFs/s    load {load()}")


def bench_lookup(size: int, queries: int, text_bytes: int) -> None:
    import numpy as np
    from threatexchange.extensions.tlsh.text_tlsh import TextTLSHSignal

    from matching.engine import kind_for

    chooser = random.Random(size)
    texts = [random_text(chooser, text_bytes) for _ in range(size)]
    hashes = [TextTLSHSignal.hash_from_str(text) for text in texts]
    kind = kind_for(TextTLSHSignal)
    start = time.perf_counter()
    accumulator = kind.accumulator(size)
    accumulator.add(np.arange(1, size + 1, dtype=np.int64), hashes)
    index = accumulator.finish()
    build = time.perf_counter() - start
    picks = [chooser.randrange(size) for _ in range(queries // 2)]
    near = [TextTLSHSignal.hash_from_str(edited(chooser, texts[i])) for i in picks]
    unrelated = [TextTLSHSignal.hash_from_str(random_text(chooser, text_bytes)) for _ in range(queries // 2)]
    # What TLSH itself says of each near copy (pytx's compare_hash with its threshold): the index
    # must find exactly those; a random three-word edit of a low-variety text often moves TLSH past 30.
    expected = sum(TextTLSHSignal.compare_hash(hashes[i], query).match for i, query in zip(picks, near, strict=True))
    times, found = [], 0
    for i, query in enumerate(near + unrelated):
        start = time.perf_counter()
        [hits] = kind.search_many(index, [query], 0)
        times.append(time.perf_counter() - start)
        if i < len(near) and picks[i] + 1 in hits.ids.tolist():
            found += 1
    print(
        f"lookup in {size:>7} TLSH:  p50 {statistics.median(times) * 1000:8.1f} ms  "
        f"max {max(times) * 1000:8.1f} ms  ({kind.name} index, built in {build:.2f}s; "
        f"near copies found {found}/{len(near)}, TLSH matches {expected})   load {load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--text-bytes", type=int, default=1000)
    parser.add_argument("--hash-count", type=int, default=5000)
    args = parser.parse_args()
    setup_django()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    bench_hashing(args.hash_count, args.text_bytes)
    for size in (int(s) for s in args.sizes.split(",")):
        bench_lookup(size, args.queries, args.text_bytes)


if __name__ == "__main__":
    main()
