"""Adding content from media or a URL: hashing turns the media into signals, banks stores them."""

from collections.abc import Mapping, Sequence
from typing import IO, Any

from banks.models import Bank, BankContent
from banks.services.contents import bank_content_create
from hashing import services as hashing
from omm_project.lib.url_fetch import url_validate


def bank_content_add_from_media(
    *,
    bank: Bank,
    content_type: str,
    media: IO[bytes],
    types: Sequence[str] | None = None,
    content_fields: Mapping[str, Any] | None = None,
    note: str = "",
    original_media_uri: str = "",
) -> BankContent:
    """
    Hash media and add it to `bank`; a photo below the quality floor is refused with a 400.
    `content_fields`: BankContent's fields from HMA's metadata (content_metadata_parse).
    """
    hashes = hashing.media_hash(content_type=content_type, media=media, types=types)
    if hashes.low_quality:
        raise hashing.LowQualityMedia(hashes.low_quality_message())
    return bank_content_create(
        bank=bank, signals=hashes.signals, note=note, original_media_uri=original_media_uri, **(content_fields or {})
    )


def bank_content_add_from_url(
    *,
    bank: Bank,
    url: str,
    content_type: str | None = None,
    types: Sequence[str] | None = None,
    content_fields: Mapping[str, Any] | None = None,
    note: str = "",
) -> BankContent:
    """Fetch `url` safely, hash it and add it to `bank`, remembering the URL as its origin."""
    url = url_validate(url)
    with hashing.media_fetch(url, content_type=content_type, types=types) as (resolved, media):
        return bank_content_add_from_media(
            bank=bank,
            content_type=resolved,
            media=media,
            types=types,
            content_fields=content_fields,
            note=note,
            original_media_uri=url,
        )
