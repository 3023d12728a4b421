"""
The sources a scan reads (docs/scans.md): what a source string names, listing it page by page
from a stored cursor, and opening one listed item.

- directory: every regular file under it (symbolic links are not followed), in path order; the
  cursor is the last relative path listed, so a listing resumes by descending only into what
  sorts after it.
- list: a text file, one item a line: a URL (fetched through omm_project.lib.url_fetch under the
  outgoing-request policy) or a signal (`signal_type,value[,content id]`, or a bare PDQ hash);
  blank lines and lines starting with # are skipped; the cursor is a byte offset.
- s3: every object under s3://bucket/prefix, by ListObjectsV2 pages; the cursor is the
  continuation token. The endpoint is the operator's setting (OMM_SCAN_S3_ENDPOINT_URL, empty for
  AWS), never a caller's, and credentials come from the scan (sealed) or boto3's environment.

Nothing here writes the database: services calls it under its own transactions.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from omm_project.lib import sealing
from omm_project.lib.errors import InvalidInput
from scans.choices import SourceKind

S3_PREFIX = "s3://"
SEAL_CONTEXT = "scans.s3_credentials"
# Media types by file extension, for files and objects (S3 objects fall back on their Content-Type).
PHOTO_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff"})
VIDEO_EXTENSIONS = frozenset({"mp4", "m4v", "mov", "webm", "avi", "mkv", "mpg", "mpeg", "wmv", "flv", "3gp"})
MAX_LINE_BYTES = 8192
READ_CHUNK_BYTES = 1024 * 1024
SPOOL_MEMORY_BYTES = 16 * 1024 * 1024
# S3 error codes that no retry will cure: the scan fails with the message.
S3_PERMANENT = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidBucketName",
        "AllAccessDisabled",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
    }
)


class SourceFailed(Exception):
    """The source cannot be listed, and retrying will not help (the scan fails with the message)."""


class SourceUnavailable(Exception):
    """The source cannot be reached right now (a timeout, a 5xx): the chunk is run again later."""


class ItemFailed(Exception):
    """One item could not be read or hashed: `reason` is the short code counted per scan."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail[:300]


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: its kind and canonical string (an absolute path, or s3://bucket/prefix)."""

    kind: str
    source: str

    @property
    def bucket_prefix(self) -> tuple[str, str]:
        bucket, _, prefix = self.source[len(S3_PREFIX) :].partition("/")
        return bucket, prefix


def _local_allowed(path: Path, *, trusted: bool) -> None:
    if trusted:
        return
    roots = [Path(root).resolve() for root in settings.OMM_SCAN_ROOTS if str(root).strip()]
    if not roots:
        raise InvalidInput("local sources are refused through the API unless OMM_SCAN_ROOTS names their folders")
    if not any(path.is_relative_to(root) for root in roots):
        raise InvalidInput("source must be under one of OMM_SCAN_ROOTS")


def _bucket_valid(bucket: str) -> bool:
    return (
        3 <= len(bucket) <= 63
        and all(c.islower() or c.isdigit() or c in ".-" for c in bucket)
        and (bucket[0].isalnum() and bucket[-1].isalnum())
    )


def source_parse(source: object, *, trusted: bool = False) -> SourceSpec:
    """
    What `source` names: s3://bucket/prefix, a directory or a file of lines. 400 for anything else,
    and, unless `trusted` (manage.py scan, run by the operator), for a local path outside
    OMM_SCAN_ROOTS.
    """
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput("source must be a non-empty string")
    source = source.strip()
    if len(source) > 2048 or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in source):
        raise InvalidInput("source must be a path or s3://bucket/prefix of at most 2048 printable characters")
    if source.startswith(S3_PREFIX):
        bucket, _, prefix = source[len(S3_PREFIX) :].partition("/")
        if not _bucket_valid(bucket):
            raise InvalidInput(f"'{bucket}' is not a valid S3 bucket name")
        return SourceSpec(SourceKind.S3, f"{S3_PREFIX}{bucket}/{prefix}")
    if "://" in source:
        raise InvalidInput("source must be a local path or s3://bucket/prefix (a URL list is a file of lines)")
    path = Path(source)
    if not path.is_absolute():
        if not trusted:
            raise InvalidInput("source must be an absolute path")
        path = path.absolute()
    resolved = path.resolve()
    _local_allowed(resolved, trusted=trusted)
    if resolved.is_dir():
        return SourceSpec(SourceKind.DIRECTORY, str(resolved))
    if resolved.is_file():
        return SourceSpec(SourceKind.LIST, str(resolved))
    raise InvalidInput("source is neither a readable directory nor a file")


# --- S3 --------------------------------------------------------------------------------------------


def credentials_seal(credentials: dict[str, str] | None) -> str:
    """The stored form of S3 credentials given with a scan ("" for none: the environment's)."""
    if not credentials:
        return ""
    return sealing.seal(json.dumps(credentials, sort_keys=True), context=SEAL_CONTEXT)


@lru_cache(maxsize=8)
def _s3_client(endpoint_url: str, region: str, sealed: str) -> Any:
    import boto3  # only processes that scan buckets pay for its import
    from botocore.config import Config

    kwargs: dict[str, Any] = {}
    if sealed:
        try:
            creds = json.loads(sealing.unseal(sealed, context=SEAL_CONTEXT, what="the scan's S3 credentials"))
        except sealing.Unreadable as exc:
            raise SourceFailed(str(exc)) from None
        kwargs = {
            "aws_access_key_id": creds["access_key_id"],
            "aws_secret_access_key": creds["secret_access_key"],
            "aws_session_token": creds.get("session_token") or None,
        }
    config = Config(
        connect_timeout=settings.OMM_SCAN_S3_TIMEOUT_SECONDS,
        read_timeout=settings.OMM_SCAN_S3_TIMEOUT_SECONDS,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config, **kwargs
    )


def s3_client(credentials_sealed: str) -> Any:
    """A boto3 S3 client for the configured endpoint, with the scan's credentials or the environment's."""
    return _s3_client(settings.OMM_SCAN_S3_ENDPOINT_URL, settings.OMM_SCAN_S3_REGION, credentials_sealed)


def _s3_error(exc: Exception) -> tuple[str, str]:
    """(code, message) of a botocore error."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    return str(error.get("Code", type(exc).__name__)), str(error.get("Message", exc))


def _list_s3(spec: SourceSpec, cursor: dict, max_items: int, credentials_sealed: str) -> tuple[list, dict, bool]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, prefix = spec.bucket_prefix
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": min(1000, max_items)}
    if cursor.get("token"):
        kwargs["ContinuationToken"] = cursor["token"]
    try:
        page = s3_client(credentials_sealed).list_objects_v2(**kwargs)
    except NoCredentialsError:
        raise SourceFailed("no S3 credentials: give them with the scan or in the environment") from None
    except ClientError as exc:
        code, message = _s3_error(exc)
        if code in S3_PERMANENT:
            raise SourceFailed(f"S3 {code}: {message}") from None
        raise SourceUnavailable(f"S3 {code}: {message}") from None
    except BotoCoreError as exc:
        raise SourceUnavailable(f"S3: {exc}") from None
    items = [[obj["Key"], int(obj.get("Size", 0))] for obj in page.get("Contents", []) if not obj["Key"].endswith("/")]
    token = page.get("NextContinuationToken")
    return items, {"token": token} if token else {}, not page.get("IsTruncated") or not token


# --- directories -----------------------------------------------------------------------------------


def _walk(root: str, after: tuple[str, ...], rel: tuple[str, ...] = ()) -> Iterator[str]:
    """Relative paths of regular files under root/rel in path order, those after `after` only."""
    try:
        entries = sorted(os.scandir(os.path.join(root, *rel)), key=lambda e: e.name)
    except OSError:
        if not rel:
            raise
        return  # a folder that vanished or cannot be read: nothing to list in it
    for entry in entries:
        if after and entry.name < after[0]:
            continue
        inner = after[1:] if after and entry.name == after[0] else ()
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(root, inner, (*rel, entry.name))
        elif entry.is_file(follow_symlinks=False) and not (after and entry.name == after[0]):
            yield "/".join((*rel, entry.name))


def _list_directory(spec: SourceSpec, cursor: dict, max_items: int) -> tuple[list, dict, bool]:
    after = tuple(cursor["after"].split("/")) if cursor.get("after") else ()
    items: list[str] = []
    try:
        for rel in _walk(spec.source, after):
            items.append(rel)
            if len(items) >= max_items:
                return items, {"after": rel}, False
    except OSError as exc:
        raise SourceFailed(f"cannot list {spec.source}: {exc.strerror or exc}") from None
    return items, {}, True


# --- files of lines --------------------------------------------------------------------------------


def _list_lines(spec: SourceSpec, cursor: dict, max_items: int) -> tuple[list, dict, bool]:
    offset = int(cursor.get("offset", 0))
    number = int(cursor.get("line", 0))
    items: list[list] = []
    try:
        with open(spec.source, "rb") as handle:
            handle.seek(offset)
            while len(items) < max_items:
                raw = handle.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return items, {}, True
                number += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    handle.readline()  # the rest of an over-long line: its item fails when run
                    raw = raw[:MAX_LINE_BYTES]
                offset = handle.tell()
                line = raw.decode("utf-8", errors="replace").strip()
                if line and not line.startswith("#"):
                    items.append([number, line])
    except OSError as exc:
        raise SourceFailed(f"cannot read {spec.source}: {exc.strerror or exc}") from None
    return items, {"offset": offset, "line": number}, False


def list_page(
    spec: SourceSpec, cursor: dict, *, max_items: int, credentials_sealed: str = ""
) -> tuple[list, dict, bool]:
    """The next items after `cursor`: (items, the cursor after them, whether the source is exhausted)."""
    if spec.kind == SourceKind.S3:
        return _list_s3(spec, cursor, max_items, credentials_sealed)
    if spec.kind == SourceKind.DIRECTORY:
        return _list_directory(spec, cursor, max_items)
    return _list_lines(spec, cursor, max_items)


# --- items -----------------------------------------------------------------------------------------


def media_type_of(name: str) -> str | None:
    """photo or video from a file name's extension, or None."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name.rsplit("/", 1)[-1] else ""
    if extension in PHOTO_EXTENSIONS:
        return "photo"
    if extension in VIDEO_EXTENSIONS:
        return "video"
    return None


def content_id_for(uri: str) -> str:
    """The match log's content id of an item: its path, URL or s3:// URI (hashed past 512 characters)."""
    if len(uri) <= 512:
        return uri
    return f"sha256:{hashlib.sha256(uri.encode()).hexdigest()}"


def _spool_copy(stream: Any, cap: int) -> IO[bytes]:
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 (the caller closes it)
    size = 0
    try:
        while chunk := stream.read(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > cap:
                raise ItemFailed("too_large", f"more than the {cap} byte limit")
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def file_open(spec: SourceSpec, rel: str) -> IO[bytes]:
    """A listed file of a directory scan, opened for reading (ItemFailed if it is gone or too big)."""
    path = os.path.join(spec.source, rel)
    try:
        # Listed as a regular file: if it has since become a link, it is not followed out of the folder.
        handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
        stat = os.fstat(handle.fileno())
    except OSError as exc:
        raise ItemFailed("read_error", exc.strerror or str(exc)) from None
    if stat.st_size > settings.OMM_MAX_REMOTE_FILE_BYTES:
        handle.close()
        raise ItemFailed(
            "too_large", f"{stat.st_size} bytes is over the {settings.OMM_MAX_REMOTE_FILE_BYTES} byte limit"
        )
    return handle


def s3_object_open(spec: SourceSpec, key: str, credentials_sealed: str) -> tuple[IO[bytes], str]:
    """An object's body (spooled, capped) and its Content-Type; ItemFailed if it cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _ = spec.bucket_prefix
    try:
        response = s3_client(credentials_sealed).get_object(Bucket=bucket, Key=key)
        size = int(response.get("ContentLength") or 0)
        if size > settings.OMM_MAX_REMOTE_FILE_BYTES:
            response["Body"].close()
            raise ItemFailed("too_large", f"{size} bytes is over the {settings.OMM_MAX_REMOTE_FILE_BYTES} byte limit")
        with response["Body"] as body:
            media = _spool_copy(body, settings.OMM_MAX_REMOTE_FILE_BYTES)
    except ClientError as exc:
        code, message = _s3_error(exc)
        status = int((exc.response or {}).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"):
            raise SourceUnavailable(f"S3 {code}: {message}") from None
        raise ItemFailed("not_found" if code in ("NoSuchKey", "404") else "read_error", f"{code}: {message}") from None
    except BotoCoreError as exc:  # connection refused, timeouts: not the object's fault
        raise SourceUnavailable(f"S3: {exc}") from None
    return media, str(response.get("ContentType", "")).split(";", 1)[0].strip().lower()
