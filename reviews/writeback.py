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
Submissions (submit(): a new signal with a status and tags, docs/exchanges.md "Submitting") go to
the exchanges whose clients can create one: ThreatExchange (a new descriptor in the collaboration's
privacy group) and the local file (an appended line, untagged positives only, as its
report_opinion). submit_check says before anything is recorded whether an API can carry one.
No models here; reviews.services.review calls report() with a client from exchange_adapter.
"""

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from threatexchange.exchanges.fetch_state import SignalOpinion, SignalOpinionCategory
from threatexchange.signal_type.signal_base import SignalType

from reviews.choices import ReportKind, SubmitStatus


class Unsupported(Exception):
    """The exchange API has no way to carry this report."""


Reporter = Callable[..., str]


def _stopncii(api: Any, *, kind: str, signal_type: type[SignalType], signal: str, tags: list[str], record: Any) -> str:
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
        if error is not None or not isinstance(body, Mapping) or body.get("error") or body.get("success") is False:
            detail = body.get("error") if isinstance(body, Mapping) else body
            raise RuntimeError(f"ThreatExchange refused {reaction} on descriptor {descriptor_id}: {detail}")
    return f"ThreatExchange {reaction} on descriptor(s) {descriptor_ids}"


def _local_file(
    api: Any, *, kind: str, signal_type: type[SignalType], signal: str, tags: list[str], record: Any
) -> str:
    if kind != ReportKind.TRUE_POSITIVE or tags:
        raise Unsupported("the file exchange records untagged true positives only (as its report_opinion)")
    return _file_append(api, signal_type=signal_type, signal=signal)


def _file_append(api: Any, *, signal_type: type[SignalType], signal: str) -> str:
    """
    Append the signal to the file exchange's file, on a line of its own: "<type> <signal>", or the
    bare value in a file of one signal type (its config's signal_type), as pytx's file API reads
    them back. Unsupported for a signal of another type than such a file's.
    """
    if _file_single_type(api.collab, signal_type):
        return _file_line_append(api, signal)
    return _file_line_append(api, f"{signal_type.get_name()} {signal}")


def _file_single_type(collab: Any, signal_type: type[SignalType]) -> bool:
    """
    Whether the file exchange's file holds one signal type (its config's signal_type: bare values,
    as pytx's file API reads each line as one signal); Unsupported when that type is not `signal_type`.
    """
    only = getattr(collab, "signal_type", None)
    if only and only != signal_type.get_name():
        raise Unsupported(f"this local file exchange holds {only} signals only, not {signal_type.get_name()}")
    return bool(only)


def _file_line_append(api: Any, line: str) -> str:
    """Append `line` to the file exchange's file, on a line of its own."""
    path = Path(api.collab.filename)
    with path.open("ab+") as f:
        f.seek(0, os.SEEK_END)
        needs_newline = False
        if f.tell():
            f.seek(-1, os.SEEK_END)
            needs_newline = f.read(1) != b"\n"
        f.write(("\n" if needs_newline else "").encode() + f"{line}\n".encode())
    return f"appended to {path.name}"


def _generic(api: Any, *, kind: str, signal_type: type[SignalType], signal: str, tags: list[str], record: Any) -> str:
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


# --- Submissions ---

# ThreatExchange descriptor status of each submission status; pytx reads MALICIOUS back as a
# positive, NON_MALICIOUS as a negative and anything else as an investigation seed.
_TE_STATUS = {
    SubmitStatus.POSITIVE_CLASS: "MALICIOUS",
    SubmitStatus.NEGATIVE_CLASS: "NON_MALICIOUS",
    SubmitStatus.INVESTIGATION_SEED: "SUSPICIOUS",
}
TE_SHARE_LEVEL = "AMBER"  # ThreatExchange's default for a privacy group's descriptors


def te_indicator_type(signal_type: type[SignalType]) -> str | None:
    """
    The ThreatExchange indicator type a new descriptor of this signal type takes, or None: its
    INDICATOR_TYPE (pytx's HasFbThreatExchangeIndicatorType), a name, a set of names, or {name:
    tag the name needs}, where the name that needs no tag is the one to submit.
    """
    declared = getattr(signal_type, "INDICATOR_TYPE", None)
    if isinstance(declared, str):
        return declared
    if isinstance(declared, Mapping):
        untagged = sorted(name for name, tag in declared.items() if tag is None)
        return untagged[0] if untagged else None
    if isinstance(declared, set | frozenset):
        return sorted(declared)[0] if declared else None
    return None


def _fb_threatexchange_check(
    *, status: str, tags: list[str], signal_type: type[SignalType] | None, collab: Any
) -> None:
    if signal_type is not None and te_indicator_type(signal_type) is None:
        raise Unsupported(f"ThreatExchange has no indicator type for {signal_type.get_name()} signals")


def _fb_threatexchange_submit(
    api: Any, *, signal_type: type[SignalType], signal: str, status: str, tags: list[str], description: str
) -> str:
    _fb_threatexchange_check(status=status, tags=tags, signal_type=signal_type, collab=api.collab)
    params = {
        "indicator": signal,
        "type": te_indicator_type(signal_type),
        "description": description,
        "share_level": TE_SHARE_LEVEL,
        "status": _TE_STATUS[SubmitStatus(status)],
        "privacy_type": "HAS_PRIVACY_GROUP",
        "privacy_members": str(api.collab.privacy_group),
    }
    if tags:
        params["tags"] = ",".join(tags)
    refused, error, body = api.client.upload_threat_descriptor(params, False, False)
    # The client returns the Graph API's JSON without checking the status: a descriptor made is
    # an answer with its id.
    if (
        refused is not None
        or error is not None
        or not isinstance(body, Mapping)
        or body.get("error")
        or body.get("success") is False
        or not body.get("id")
    ):
        detail = refused or (body.get("error") if isinstance(body, Mapping) and body.get("error") else body)
        raise RuntimeError(f"ThreatExchange made no descriptor: {detail}")
    return f"ThreatExchange descriptor {body['id']} ({params['status']})"


def _local_file_check(*, status: str, tags: list[str], signal_type: type[SignalType] | None, collab: Any) -> None:
    if status != SubmitStatus.POSITIVE_CLASS or tags:
        raise Unsupported("the local file exchange takes untagged positive_class submissions only (a line per signal)")
    if signal_type is not None and collab is not None:
        _file_single_type(collab, signal_type)


def _local_file_submit(
    api: Any, *, signal_type: type[SignalType], signal: str, status: str, tags: list[str], description: str
) -> str:
    _local_file_check(status=status, tags=tags, signal_type=None, collab=None)
    return _file_append(api, signal_type=signal_type, signal=signal)  # checks the file's signal type


def _submitters() -> list[tuple[type, Callable[..., str], Callable[..., None]]]:
    """(API class, how to submit, what it cannot carry: raises Unsupported) of each API that can submit."""
    from threatexchange.exchanges.impl.fb_threatexchange_api import FBThreatExchangeSignalExchangeAPI
    from threatexchange.exchanges.impl.file_api import LocalFileSignalExchangeAPI

    return [
        (FBThreatExchangeSignalExchangeAPI, _fb_threatexchange_submit, _fb_threatexchange_check),
        (LocalFileSignalExchangeAPI, _local_file_submit, _local_file_check),
    ]


def submit_check(
    api_cls: type,
    *,
    api_name: str,
    status: str,
    tags: list[str],
    signal_types: list[type[SignalType]] = (),
    collab: Any = None,
) -> None:
    """
    Raise Unsupported, naming the exchange type or what it cannot carry, when exchanges of
    `api_cls` (with the collaboration config `collab`, when given) cannot take this submission:
    no way to create a signal there, or not with this status, these tags or these signal types.
    """
    for cls, _, check in _submitters():
        if issubclass(api_cls, cls):
            for signal_type in signal_types or [None]:
                check(status=status, tags=tags, signal_type=signal_type, collab=collab)
            return
    raise Unsupported(
        f"exchange type '{api_name}' cannot take submissions; these can: fb_threatexchange, local_file"
    )


def submit_takes_tags(api_cls: type) -> bool:
    """Whether submissions to exchanges of `api_cls` may carry tags."""
    try:
        submit_check(api_cls, api_name="", status=SubmitStatus.POSITIVE_CLASS, tags=["tag"])
    except Unsupported:
        return False
    return True


def submit(
    api: Any, *, signal_type: type[SignalType], signal: str, status: str, tags: list[str], description: str
) -> str:
    """
    Submit one signal with the API instance `api`; returns what the exchange was told (and its id
    for the new record, where it gives one). Unsupported when the API cannot carry it, anything
    else when sending failed.
    """
    for cls, submitter, _ in _submitters():
        if isinstance(api, cls):
            return submitter(
                api, signal_type=signal_type, signal=signal, status=status, tags=list(tags), description=description
            )
    raise Unsupported(f"{type(api).__name__} cannot take submissions")
