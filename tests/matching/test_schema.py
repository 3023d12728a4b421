"""The OpenAPI schema of the matching endpoints generates without warnings."""

from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator


def test_matching_schema_has_no_warnings():
    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    ours = ("/m/", "/c/signal_type/index", "match_settings")
    assert {p for p in schema["paths"] if p.startswith(ours) or any(o in p for o in ours)} >= {
        "/m/raw_lookup",
        "/m/lookup",
        "/m/compare",
        "/m/index/status",
        "/c/signal_type/index",
        "/c/bank/{bank_name}/match_settings",
    }
    mine = [
        w
        for w in list(GENERATOR_STATS._warn_cache) + list(GENERATOR_STATS._error_cache)
        if any(o in w for o in ("/m/", "signal_type/index", "match_settings", "matching"))
    ]
    assert not mine
