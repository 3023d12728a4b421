"""
Signal types omm was not written for, enabled through OMM_SIGNAL_TYPES as an operator would, walked
through every core path: the signal type list, bank content, bulk import, an exchange fetch, the
index snapshot and its delta, lookups (HMA's and raw), compare, the match log, cases and a verdict
that adds to a bank. Two types: one defined in the test suite (tests/extension_signal.py) and
python-threatexchange's tlsh extension (text_tlsh), each matched by its own rule.
"""

import io
import random
from dataclasses import dataclass

import pytest
from threatexchange.extensions.tlsh.text_tlsh import TextTLSHSignal

from banks.importing import signals_import
from banks.models import ContentSignal
from exchanges import services as exchange_services
from matching import services as matching_services
from omm_project.lib import pytx
from reviews.models import Case
from tests.builders import FLYER, FLYER_EDITED, MINUTES, TLSH_SIGNAL_TYPE
from tests.extension_signal import DOTTED_PATH

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Extension:
    """A signal type to enable and the values of the walk, with what its own rule says of them."""

    path: str
    name: str
    banked: str  # stored; `banked_as_sent` is how the walk sends it (the validator normalises it)
    banked_as_sent: str
    near: str  # a match of `banked` at `near_distance`
    near_distance: int
    far: str  # matches nothing banked
    imported: str
    fetched: str
    later: str
    bad: str  # refused by the type's validator with `bad_message`
    bad_message: str


def _tlsh_of_words(seed: int) -> str:
    """TLSH of a text of 150 random words: far from every other seed's and from the flyer's."""
    words = "harbour market bread honey pottery band carousel lifeboat budget library parking school".split()
    words += "minutes treasurer accounts reserve roof quotes member chair river meadow lantern".split()
    chooser = random.Random(seed)
    return TextTLSHSignal.hash_from_str(" ".join(chooser.choice(words) for _ in range(150)))


HEX_DIGITS = Extension(
    path=DOTTED_PATH,
    name="hex_digits",
    banked="0123456789abcdef",
    banked_as_sent="0123456789ABCDEF",
    near="0123456789abcdff",  # one digit apart: a match
    near_distance=1,
    far="0123456789abc000",  # three digits apart: no match
    imported="1111111111111111",
    fetched="2222222222222222",
    later="3333333333333333",
    bad="xyz",
    bad_message="16 hex digits",
)
_FLYER_TLSH = TextTLSHSignal.hash_from_str(FLYER)
_EDITED_TLSH = TextTLSHSignal.hash_from_str(FLYER_EDITED)
TEXT_TLSH = Extension(
    path=TLSH_SIGNAL_TYPE,
    name="text_tlsh",
    banked=_FLYER_TLSH,
    banked_as_sent=_FLYER_TLSH,
    near=_EDITED_TLSH,  # the flyer with three words changed
    near_distance=TextTLSHSignal.compare_hash(_FLYER_TLSH, _EDITED_TLSH).distance.distance,
    far=TextTLSHSignal.hash_from_str(MINUTES),
    imported=_tlsh_of_words(1),
    fetched=_tlsh_of_words(2),
    later=_tlsh_of_words(3),
    bad=_FLYER_TLSH.lower(),
    bad_message="invalid TLSH hash",
)


@pytest.fixture(params=[HEX_DIGITS, TEXT_TLSH], ids=lambda extension: extension.name)
def extension(request, settings):
    """The extension enabled beside the default types, as `OMM_SIGNAL_TYPES=...,<dotted path>`."""
    settings.OMM_SIGNAL_TYPES = [*settings.OMM_SIGNAL_TYPES, request.param.path]
    pytx.signal_types.cache_clear()
    yield request.param
    pytx.signal_types.cache_clear()


def _lookup(client, name: str, value: str, **params) -> dict:
    response = client.get("/m/lookup", {"signal_type": name, "signal": value, **params})
    assert response.status_code == 200, response.content
    return response.json()


def test_a_signal_type_from_settings_walks_through_every_core_path(extension, runtime, full_client, tmp_path):
    x = extension
    # It is listed with the content type it applies to
    listed = {t["name"]: t for t in full_client.get("/c/signal_type").json()}
    assert x.name in listed, listed
    # Bank content: stored as the type's own validator normalises it; a bad value is its 400
    assert full_client.post("/c/banks", {"name": "TEXTS"}, format="json").status_code == 201
    response = full_client.post("/c/bank/TEXTS/signal", {x.name: x.banked_as_sent}, format="json")
    assert response.status_code == 200, response.content
    banked_id = response.json()["id"]
    bad = full_client.post("/c/bank/TEXTS/signal", {x.name: x.bad}, format="json")
    assert bad.status_code == 400 and x.bad_message in bad.content.decode()
    # Bulk import
    report = signals_import(bank_name="TEXTS", lines=io.StringIO(f"signal_type,signal_value\n{x.name},{x.imported}\n"))
    assert report.imported == 1, report
    # An exchange fetch (the local file exchange's "<type> <signal>" lines)
    signal_file = tmp_path / "shared.txt"
    signal_file.write_text(f"{x.name} {x.fetched}\n")
    exchange = exchange_services.exchange_create(
        name="PARTNER", api="local_file", api_json={"filename": str(signal_file)}, fetch_now=False
    )
    assert exchange_services.exchange_fetch(exchange_id=exchange.pk).error in (None, "")
    assert ContentSignal.objects.filter(content__bank__name="PARTNER", signal_value=x.fetched).exists()
    # The index: a snapshot through the generic path, loaded by the matcher
    snapshot = matching_services.index_build(signal_type=x.name)
    assert snapshot is not None and snapshot.kind == "generic" and snapshot.signal_count == 3
    runtime.refresh()
    assert runtime.state.types[x.name].kind.name == "generic"
    # Lookups: the type's own match rule decides (hex_digits: at most 2 digits apart; text_tlsh:
    # TLSH distance at most 30), HMA's answer shape
    assert _lookup(full_client, x.name, x.near, content_id="post-1") == {
        "TEXTS": [{"bank_content_id": banked_id, "distance": str(x.near_distance)}]
    }
    assert _lookup(full_client, x.name, x.far) == {}
    assert set(_lookup(full_client, x.name, x.fetched)) == {"PARTNER"}
    raw = full_client.get("/m/raw_lookup", {"signal_type": x.name, "signal": x.imported}).json()
    assert len(raw["matches"]) == 1
    # The delta: content added after the snapshot matches without a rebuild
    later = full_client.post("/c/bank/TEXTS/signal", {x.name: x.later}, format="json").json()["id"]
    runtime.refresh()
    assert _lookup(full_client, x.name, x.later) == {"TEXTS": [{"bank_content_id": later, "distance": "0"}]}
    # Compare
    compared = full_client.post("/m/compare", {x.name: [x.banked, x.near]}, format="json")
    assert compared.status_code == 200 and compared.json() == {x.name: [True, {"distance": x.near_distance}]}
    # The match log and the case of post-1
    logged = full_client.get("/c/matches", {"signal_type": x.name}).json()["results"]
    assert {(m["signal_value"], m["content_id"]) for m in logged} >= {(x.near, banked_id)}, logged
    case = Case.objects.get(platform_content_id="post-1")
    detail = full_client.get(f"/c/case/{case.pk}").json()
    assert [(m["signal_type"], m["signal_value"]) for m in detail["matches"]] == [(x.name, x.near)]
    # A true positive that adds the submission to a bank: new content of the extension's type
    assert full_client.post("/c/banks", {"name": "FOUND"}, format="json").status_code == 201
    verdict = full_client.post(
        f"/c/case/{case.pk}/verdict", {"verdict": "true_positive", "add_to_bank": "FOUND"}, format="json"
    )
    assert verdict.status_code == 200, verdict.content
    assert list(
        ContentSignal.objects.filter(content__bank__name="FOUND").values_list("signal_type", "signal_value")
    ) == [(x.name, x.near)]
