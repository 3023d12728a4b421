"""hashing.services.signal_types_select: which signal types an upload is hashed with."""

import pytest
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal

from hashing import services
from omm_project.lib.errors import InvalidInput

PDQ = "threatexchange.signal_type.pdq.signal.PdqSignal"
MD5 = "threatexchange.signal_type.md5.VideoMD5Signal"


def test_selection_follows_the_enabled_signal_types(signal_types):
    assert services.signal_types_select(content_type="photo") == [PdqSignal]
    assert services.signal_types_select(content_type="video") == [VideoMD5Signal]
    signal_types([MD5])  # the answer remembered for photos must not outlive the types it came from
    with pytest.raises(InvalidInput, match="no enabled signal type can hash content_type 'photo'"):
        services.signal_types_select(content_type="photo")
    with pytest.raises(InvalidInput, match="signal type 'pdq' doesn't exist or is disabled"):
        services.signal_types_select(content_type="photo", types=["pdq"])
    signal_types([MD5, PDQ])
    assert services.signal_types_select(content_type="photo") == [PdqSignal]
    assert services.signal_types_select(content_type="video", types=["video_md5"]) == [VideoMD5Signal]


def test_only_enabled_content_types_are_remembered():
    services.signal_types_select(content_type="photo")
    for name in ("no-such-type", "x" * 1000):  # a client's name gets its 400, and is not kept
        with pytest.raises(InvalidInput):
            services.signal_types_select(content_type=name)
    assert "photo" in services._applicable_seen
    assert "no-such-type" not in services._applicable_seen and "x" * 1000 not in services._applicable_seen
