"""
The reference images and their PDQ hashes (shared/data/pdq/EXPECTED_PDQ.tsv, beside the repo).
Outside CI a missing folder skips the tests that need it; in CI (CI=true) it is a failure, so the
reference comparison can never silently not run.
"""

import os
from pathlib import Path

PDQ_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pdq"
NO_DATA = f"PDQ reference data not found at {PDQ_DATA_DIR}"

if os.environ.get("CI") and not (PDQ_DATA_DIR / "EXPECTED_PDQ.tsv").exists():
    raise RuntimeError(NO_DATA + " (CI must have shared/ beside the repo)")


def expected_pdq_rows() -> list[tuple[str, str, int]]:
    """(relative path, pdq, quality) of every image in EXPECTED_PDQ.tsv; [] when the data is absent."""
    tsv = PDQ_DATA_DIR / "EXPECTED_PDQ.tsv"
    if not tsv.exists():
        return []
    rows = []
    for line in tsv.read_text().splitlines()[1:]:
        if line.strip():
            path, pdq, quality = line.split("\t")
            rows.append((path, pdq, int(quality)))
    return rows
