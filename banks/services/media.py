"""Adding content from media or a URL: hashing turns the media into signals, banks stores them."""

from collections.abc import Sequence
from typing import IO

from banks.models import Bank, BankContent
from banks.services.banks import note_validate
from banks.services.contents import bank_content_create, content_metadata_parse
from hashing import services as hashing
from omm_project.lib.url_fetch import url_validate


def bank_content_add_from_media(
    *,
    bank: Bank,
    content_type: str,
    media: IO[bytes],
    types: Sequence[str] | None = None,
    metadata: object = None,
    note: object = None,
    original_media_uri: str = "",
) -> BankContent:
    """Hash media and add it to `bank`; a photo below the quality floor is refused with a 400."""
    fields = content_metadata_parse(metadata)
    note = note_validate(note)
    hashes = hashing.media_hash(content_type=content_type, media=media, types=types)
    if hashes.low_quality:
        raise hashing.LowQualityMedia(hashes.low_quality_message())
    return bank_content_create(
        bank=bank, signals=hashes.signals, note=note, original_media_uri=original_media_uri, **fields
    )


def bank_content_add_from_url(
    *,
    bank: Bank,
    url: str,
    content_type: str | None = None,
    types: Sequence[str] | None = None,
    metadata: object = None,
    note: object = None,
) -> BankContent:
    """Fetch `url` safely, hash it and add it to `bank`, remembering the URL as its origin."""
    content_metadata_parse(metadata)  # reject bad input before downloading
    note_validate(note)
    url = url_validate(url)
    with hashing.media_fetch(url, content_type=content_type, types=types) as (resolved, media):
        return bank_content_add_from_media(
            bank=bank,
            content_type=resolved,
            media=media,
            types=types,
            metadata=metadata,
            note=note,
            original_media_uri=url,
        )
