"""
How to tell an exchange what we think of one of its signals, per python-threatexchange API class.

python-threatexchange has one generic call, SignalExchangeAPI.report_opinion(s_type, signal,
opinion); report_seen is commented out upstream. Only the file exchange implements
report_opinion, so for APIs whose client can report by other means there is an adapter here:

- StopNCII: StopNCIIAPI.submit_feedback (seen = PendingReview, true positive = Blocked,
  false positive = NotBlocked), with the review labels as tags.
- ThreatExchange (fb_threatexchange): a reaction on each descriptor of the indicator, taken from
  the fetched record (seen = SAW_THIS_TOO, true positive = HELPFUL, false positive = NOT_HELPFUL).
- Local file: what pytx's LocalFileSignalExchangeAPI.report_opinion means to do (append
  "<type> <signal>" for an untagged positive), done here because that method opens the file in
  mode "wta", which Python refuses, so it always raises (python-threatexchange 1.2.17).
- Anything else: report_opinion for true and false positives (POSITIVE_CLASS / NEGATIVE_CLASS,
  tags = labels). NotImplementedError, or a kind with no mapping, is Unsupported: recorded as
  such, not as a failure.
No models here; reviews.services.review calls report() with a client from exchange_adapter.
"""

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from threatexchange.exchanges.fetch_state import SignalOpinion, SignalOpinionCategory
from threatexchange.signal_type.signal_base import SignalType

from reviews.choices import ReportKind


class Unsupported(Exception):
    """The exchange API has no way to carry this report."""


Reporter = Callable[..., str]


def _stopncii(
    api: Any, *, kind: str, signal_type: type[SignalType], signal: str, tags: list[str], record: Any
) -> str:
    from threatexchange.exchanges.clients.stopncii.api import (
        StopNCIICSPFeedbackValue as Feedback,
    )
    from threatexchange.exchanges.clients.stopncii.api import (
        StopNCIIEndpoint,
        StopNCIISignalType,
    )

    types = {"pdq": StopNCIISignalType.ImagePDQ, "video_md5": StopNCIISignalType.VideoMD5}
    feedback = {
        ReportKind.SEEN: Feedback.PendingReview,
        ReportKind.TRUE_POSITIVE: Feedback.Blocked,
        ReportKind.FALSE_POSITIVE: Feedback.NotBlocked,
    }[ReportKind(kind)]
    stop_type = types.get(signal_type.get_name())
    if stop_type is None:
        raise Unsupported(f"StopNCII takes no feedback on {signal_type.get_name()} signals")
    client = api.api
    # pytx's for_collab gives the client a function key for FetchHashes only, and StopNCII
    # credentials hold a single function key: use it for SubmitFeedback too.
    keys = client._function_keys  # pytx keeps them here (no public setter); loud if that changes
    if StopNCIIEndpoint.SubmitFeedback not in keys:
        keys[StopNCIIEndpoint.SubmitFeedback] = keys.get(StopNCIIEndpoint.FetchHashes)
    client.submit_feedback(stop_type, signal, feedback, set(tags))
    return f"StopNCII feedback {feedback.value}"


# ThreatExchange's marker for opinions that are reactions, not descriptors one can react to.
_TE_REACTION_ONLY = -1


def _fb_threatexchange(
    api: Any, *, kind: str, signal_type: type[SignalType], signal: str, tags: list[str], record: Any
) -> str:
    reaction = {
        ReportKind.SEEN: "SAW_THIS_TOO",
        ReportKind.TRUE_POSITIVE: "HELPFUL",
        ReportKind.FALSE_POSITIVE: "NOT_HELPFUL",
    }[ReportKind(kind)]
    opinions = record.get("opinions", []) if isinstance(record, Mapping) else []
    descriptor_ids = sorted(
        {
            int(o["descriptor_id"])
            for o in opinions
            if isinstance(o, Mapping) and o.get("descriptor_id") not in (None, _TE_REACTION_ONLY)
        }
    )
    if not descriptor_ids:
        raise Unsupported("the fetched record names no ThreatExchange descriptor to react to")
    for descriptor_id in descriptor_ids:
        _, error, body = api.client.react_to_threat_descriptor(descriptor_id, reaction)
        # The client returns the Graph API's JSON without checking the status.
        if (
            error is not None
            or not isinstance(body, Mapping)
            or body.get("error")
            or body.get("success") is False
        ):
            detail = body.get("error") if isinstance(body, Mapping) else body
            raise RuntimeError(f"ThreatExchange refused {reaction} on descriptor {descriptor_id}: {detail}")
    return f"ThreatExchange {reaction} on descriptor(s) {descriptor_ids}"


def _local_file(
    api: Any, *, kind: str, signal_type: type[SignalType], signal: str, tags: list[str], record: Any
) -> str:
    if kind != ReportKind.TRUE_POSITIVE or tags:
        raise Unsupported("the file exchange records untagged true positives only (as its report_opinion)")
    path = Path(api.collab.filename)
    with path.open("ab+") as f:
        f.seek(0, os.SEEK_END)
        needs_newline = False
        if f.tell():
            f.seek(-1, os.SEEK_END)
            needs_newline = f.read(1) != b"\n"
        f.write(("\n" if needs_newline else "").encode() + f"{signal_type.get_name()} {signal}\n".encode())
    return f"appended to {path.name}"


def _generic(
    api: Any, *, kind: str, signal_type: type[SignalType], signal: str, tags: list[str], record: Any
) -> str:
    if kind == ReportKind.SEEN:
        raise Unsupported(f"{type(api).__name__} cannot report that a signal was seen")
    category = (
        SignalOpinionCategory.POSITIVE_CLASS
        if kind == ReportKind.TRUE_POSITIVE
        else SignalOpinionCategory.NEGATIVE_CLASS
    )
    try:
        api.report_opinion(signal_type, signal, SignalOpinion(True, category, set(tags)))
    except NotImplementedError:
        with_tags = " with labels" if tags else ""
        raise Unsupported(
            f"{type(api).__name__} does not implement report_opinion for {category.name}{with_tags}"
        ) from None
    return f"report_opinion {category.name}"


def _reporters() -> list[tuple[type, Reporter]]:
    from threatexchange.exchanges.impl.fb_threatexchange_api import FBThreatExchangeSignalExchangeAPI
    from threatexchange.exchanges.impl.file_api import LocalFileSignalExchangeAPI
    from threatexchange.exchanges.impl.stop_ncii_api import StopNCIISignalExchangeAPI

    return [
        (StopNCIISignalExchangeAPI, _stopncii),
        (FBThreatExchangeSignalExchangeAPI, _fb_threatexchange),
        (LocalFileSignalExchangeAPI, _local_file),
    ]


def report(
    api: Any, *, kind: str, signal_type: type[SignalType], signal: str, tags: list[str], record: Any = None
) -> str:
    """
    Send one report with the API instance `api`; returns a short description of what was sent.
    Raises Unsupported when the API cannot carry it, anything else when sending failed.
    """
    reporter: Reporter = _generic
    for cls, candidate in _reporters():
        if isinstance(api, cls):
            reporter = candidate
            break
    return reporter(api, kind=kind, signal_type=signal_type, signal=signal, tags=list(tags), record=record)
