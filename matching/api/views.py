"""Matching API under /m, compatible with HMA 2.0 (differences: docs/compat.md)."""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from banks import selectors as bank_selectors
from matching import lookup, selectors, services
from matching.api.serializers import (
    BankMatchSettingsInputSerializer,
    BankMatchSettingsSerializer,
    ComparisonsField,
    IndexStatusSerializer,
    LookupMatchSerializer,
    LookupQuerySerializer,
    LookupUploadQuerySerializer,
    RawLookupBatchSerializer,
    SignalQuerySerializer,
    SignalTypeIndexSerializer,
    SignalTypeQuerySerializer,
)
from omm_project.core.schema import KeyedBy
from omm_project.lib import pytx
from omm_project.lib.api import body_object, parse_csv, validated
from omm_project.lib.errors import InvalidInput
from omm_project.lib.inputs import body_keys_check, query_bool
from omm_project.lib.parsers import JSONParser
from omm_project.lib.uploads import single_upload, upload_cap_install, upload_fields

# Lookups answer objects keyed by bank name (and, for media, by signal type first).
BankMatches = KeyedBy(LookupMatchSerializer(many=True), key="bank name")
MatchesBySignalType = KeyedBy(BankMatches, key="signal type")
# GET /m/lookup answers by bank for a signal (or a URL with signal_type), by type then bank for a URL.
LookupAnswer = KeyedBy(
    {"oneOf": [{"type": "array", "items": {"$ref": "#/components/schemas/LookupMatch"}},
               {"type": "object", "additionalProperties": {
                   "type": "array", "items": {"$ref": "#/components/schemas/LookupMatch"}}}]},
    key="bank name (signal, or url with signal_type) or signal type (url alone)",
)
ComparePair = {
    "type": "array",
    "items": {"type": "string"},
    "minItems": 2,
    "maxItems": 2,
    "description": "The two hashes to compare.",
}
CompareResult = {
    "type": "array",
    "minItems": 2,
    "maxItems": 2,
    "description": "[match, {distance}]",
    "items": {
        "oneOf": [
            {"type": "boolean"},
            {"type": "object", "required": ["distance"], "properties": {"distance": {"type": "integer"}}},
        ]
    },
}


class JsonOnly(DefaultContentNegotiation):
    """Every /m answer is JSON; skipping Accept-header negotiation saves a tenth of a lookup."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MatchingView(APIView):
    """Base of the /m views: JSON in and out, nothing else to negotiate."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnly


def _required(params, name: str) -> str:
    value = params.get(name)
    if value is None:
        raise InvalidInput(f"{name}: This field is required.", errors={name: ["This field is required."]})
    return value


def _bool(params, name: str) -> bool:
    return query_bool(params.get(name), field=name, default=False)


def _hashing():
    """The hashing service, for lookups by URL or upload (403 without the hasher role, as HMA)."""
    if "hasher" not in settings.OMM_ROLES:
        raise exceptions.PermissionDenied("Hashing is disabled, missing role")
    # Imported here, not at the top: a matcher-only process (no hasher role) never loads hashing's
    # code and its image libraries. With the role, the /h routes have imported it at start.
    from hashing import services

    return services


def _lookup_hashes(hashes, params: dict, *, only: str | None = None) -> dict[str, dict]:
    """
    Look up (and log) every signal of hashed media, or only the type `only`:
    {"<signal_type>": {"<BANK>": [...]}}. Matches the caller is not shown are not logged either.
    """
    if hashes.low_quality:
        raise InvalidInput(f"invalid signal: {hashes.low_quality_message()}")
    results = {}
    for name, value in hashes.signals.items():
        if only is not None and name != only:
            continue
        hits = lookup.lookup_recorded(
            signal_type=lookup.signal_type_resolve(name),
            signal=value,
            banks=params.get("banks") or None,
            seed=params.get("seed"),
            bypass_coinflip=params["bypass_coinflip"],
            platform_content_id=params.get("content_id", ""),
            content_uri=params.get("content_uri", ""),
        )
        details = lookup.hit_details(hits) if params["include_details"] else None
        results[name] = lookup.group_by_bank(hits, details)
    return results


def raw_lookup_batch(body: object) -> dict:
    """
    POST /m/raw_lookup's answer to a parsed JSON body (this view and matching.wsgi's fast path
    both answer with it): each signal's raw lookup, searched as one batch, in the body's order.
    """
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object")
    body_keys_check(body, RawLookupBatchSerializer._declared_fields)
    params = validated(RawLookupBatchSerializer, body)
    signals = params["signals"]
    results = lookup.raw_lookup_many(
        signal_type=lookup.signal_type_resolve(params["signal_type"]), signals=signals, banks=params.get("banks")
    )
    return lookup.raw_lookup_batch_answer(signals, results, include_distance=params["include_distance"])


RawLookupAnswer = inline_serializer(
    "RawLookup",
    {
        "matches": serializers.ListField(
            help_text="Content ids; with include_distance or include_details, objects "
            "{bank_content_id, distance, ...}."
        ),
        "suppressed": serializers.BooleanField(
            required=False, help_text="Present (true) when the matches include a suppression bank's."
        ),
    },
)


class RawLookupView(MatchingView):
    """
    GET: every match of a signal in the index, without enabled or ratio filtering.
    POST (beyond HMA): the same for many signals of one type at once.
    """

    parser_classes = [JSONParser]  # lib.parsers': storable strings, finite numbers, bounded depth

    @extend_schema(
        parameters=[SignalQuerySerializer],
        responses=RawLookupAnswer,
    )
    def get(self, request: Request) -> Response:
        # The hot path: parameters are read by hand, as matching.wsgi's fast path reads them, and
        # SignalQuerySerializer only documents them. Validating it costs about 35 times the hand
        # parsing (about 0.17 ms against 5 us per request, measured in-process), a fifth of a lookup.
        query = request.query_params
        params = {
            "signal": _required(query, "signal"),
            "signal_type": _required(query, "signal_type"),
            "include_distance": _bool(query, "include_distance"),
            "include_details": _bool(query, "include_details"),
        }
        hits = lookup.raw_lookup(
            signal_type=lookup.signal_type_resolve(params["signal_type"]),
            signal=params["signal"],
            banks=parse_csv(query.get("banks")) or None,
        )
        details = lookup.hit_details(hits) if params["include_details"] else None
        return Response(lookup.raw_lookup_answer(hits, include_distance=params["include_distance"], details=details))

    @extend_schema(
        request=RawLookupBatchSerializer,
        responses=inline_serializer(
            "RawLookupBatch",
            {
                "results": inline_serializer(
                    "RawLookupBatchEntry",
                    {
                        "signal": serializers.JSONField(help_text="The entry as sent."),
                        "matches": serializers.ListField(
                            required=False, help_text="As GET /m/raw_lookup answers this signal."
                        ),
                        "suppressed": serializers.BooleanField(
                            required=False, help_text="As GET /m/raw_lookup answers this signal."
                        ),
                        "error": inline_serializer(
                            "RawLookupBatchError",
                            {"message": serializers.CharField(), "code": serializers.CharField()},
                            required=False,
                            help_text="Instead of matches, for an entry that is not a valid signal.",
                        ),
                    },
                    many=True,
                    help_text="One entry per signal, in the body's order.",
                )
            },
        ),
        operation_id="m_raw_lookup_batch",
    )
    def post(self, request: Request) -> Response:
        return Response(raw_lookup_batch(request.data))


class LookupView(MatchingView):
    """GET: matches of a signal (or of media at a URL) by bank. POST: of an uploaded file."""

    accepts_media = True  # multipart bodies up to OMM_MAX_UPLOAD_BYTES (lib.uploads)

    @extend_schema(parameters=[LookupQuerySerializer], responses={200: LookupAnswer}, operation_id="m_lookup_get")
    def get(self, request: Request) -> Response:
        params = validated(LookupQuerySerializer, request.query_params)
        if params.get("url"):
            hashes = _hashing().media_hash_from_url(
                url=params["url"], content_type=params.get("content_type"), types=params.get("types") or None
            )
            wanted = params.get("signal_type") or None
            results = _lookup_hashes(hashes, params, only=wanted)
            if wanted:
                return Response(results.get(wanted, {}))
            return Response(results)
        if params.get("signal") is None or not params.get("signal_type"):
            raise InvalidInput("Either url or both signal and signal_type are required")
        hits = lookup.lookup_recorded(
            signal_type=lookup.signal_type_resolve(params["signal_type"]),
            signal=params["signal"],
            banks=params.get("banks") or None,
            seed=params.get("seed"),
            bypass_coinflip=params["bypass_coinflip"],
            platform_content_id=params.get("content_id", ""),
            content_uri=params.get("content_uri", ""),
        )
        details = lookup.hit_details(hits) if params["include_details"] else None
        return Response(lookup.group_by_bank(hits, details))

    @extend_schema(
        parameters=[LookupUploadQuerySerializer],
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"photo": {"type": "string", "format": "binary"}},
            }
        },
        responses={200: MatchesBySignalType},
        operation_id="m_lookup_upload",
    )
    def post(self, request: Request) -> Response:
        hashing = _hashing()
        upload_cap_install(request)
        body_object(request, upload_fields())  # the upload is the body: no other fields
        params = validated(LookupUploadQuerySerializer, request.query_params)
        content_type, upload = single_upload(request)
        hashes = hashing.media_hash(
            content_type=content_type, media=upload, types=params.get("types") or None
        )
        return Response(_lookup_hashes(hashes, params))


class CompareView(MatchingView):
    """POST {"<signal_type>": [hash1, hash2], ...}: whether each pair matches, and the distance."""

    parser_classes = [JSONParser]  # lib.parsers': storable strings, finite numbers, bounded depth

    @extend_schema(
        request=KeyedBy(ComparePair, key="signal type", min_keys=1),
        responses={200: KeyedBy(CompareResult, key="signal type")},
    )
    def post(self, request: Request) -> Response:
        # Keys are signal types: an unknown one is a 400 naming it (HMA's words).
        body = body_object(request, fields=None, message="Request input was not a dict")
        out = {}
        for signal_type, left, right in ComparisonsField().run_validation(body):
            match, distance = lookup.compare(signal_type=signal_type, left=left, right=right)
            out[signal_type.get_name()] = [match, {"distance": distance}]
        return Response(out)


def _signal_type_names(request: Request) -> list[str]:
    name = validated(SignalTypeQuerySerializer, request.query_params).get("signal_type")
    if not name:
        return list(pytx.signal_types())
    if name not in pytx.signal_types():
        raise InvalidInput(f"No such signal type '{name}'")
    return [name]


class IndexStatusView(MatchingView):
    """GET: per signal type, the newest stored index and what this matcher has loaded."""

    @extend_schema(
        parameters=[SignalTypeQuerySerializer],
        responses={200: KeyedBy(IndexStatusSerializer(), key="signal type")},
    )
    def get(self, request: Request) -> Response:
        return Response(lookup.index_status(names=_signal_type_names(request)))


class SignalTypeIndexView(APIView):
    """GET /c/signal_type/index: per signal type, database size against the newest index."""

    @extend_schema(
        parameters=[SignalTypeQuerySerializer],
        responses={
            200: KeyedBy(SignalTypeIndexSerializer(), key="signal type"),
            400: OpenApiResponse(description="No such signal type"),
        },
    )
    def get(self, request: Request) -> Response:
        names = _signal_type_names(request)
        return Response({name: selectors.index_status(signal_type=name) for name in names})


class BankMatchSettingsView(APIView):
    """GET or PUT {"pdq_threshold": int | null} of one bank (beyond HMA: per-bank PDQ threshold)."""

    @extend_schema(responses=BankMatchSettingsSerializer)
    def get(self, request: Request, bank_name: str) -> Response:
        bank = bank_selectors.bank_get(name=bank_name)
        return Response({"bank": bank.name, **selectors.bank_match_settings_get(bank_id=bank.pk)})

    @extend_schema(request=BankMatchSettingsInputSerializer, responses=BankMatchSettingsSerializer)
    def put(self, request: Request, bank_name: str) -> Response:
        body = body_object(request, BankMatchSettingsInputSerializer)
        bank = bank_selectors.bank_get(name=bank_name)  # an unknown bank's 404 comes before a bad value's 400
        data = validated(BankMatchSettingsInputSerializer, body)
        if "pdq_threshold" in data:
            services.bank_match_settings_update(bank=bank, pdq_threshold=data["pdq_threshold"])
        return Response({"bank": bank.name, **selectors.bank_match_settings_get(bank_id=bank.pk)})
