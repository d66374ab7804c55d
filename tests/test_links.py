"""A network in a link: the round trip, and every kind of bad link refused with a message, never a traceback."""

import base64
import zlib

import pytest

from s7core.errors import UserError
from s7core.links import MAX_LINK_BYTES, LinkError, canonical_json, spec_from_link, spec_to_link
from s7core.spec import PRESETS, SpecError, get_preset, layer


def _edited_tiny():
    tiny = get_preset("tiny")
    return tiny.with_layers(tiny.layers[:-3] + (layer("dropout", p=0.2),) + tiny.layers[-3:])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_as_it_is_links_by_name(name: str) -> None:
    assert spec_to_link(get_preset(name)) == {"preset": name}


def test_an_edited_network_round_trips_through_its_link() -> None:
    edited = _edited_tiny()
    link = spec_to_link(edited)
    assert list(link) == ["spec"] and "=" not in link["spec"]
    assert spec_from_link(link["spec"]) == edited
    assert canonical_json(spec_from_link(link["spec"])) == canonical_json(edited)


def test_a_link_may_hold_plain_json_or_plain_base64_of_json() -> None:
    edited = _edited_tiny()
    text = edited.to_json(indent=None)
    assert spec_from_link(text) == edited
    assert spec_from_link(_b64(text.encode())) == edited
    assert spec_from_link(f"  {_b64(zlib.compress(text.encode()))}\n") == edited  # spaces from a pasted link


def test_a_renamed_preset_is_packed_not_named() -> None:
    renamed = get_preset("tiny").with_layers(get_preset("seed").layers)
    assert list(spec_to_link(renamed)) == ["spec"]


@pytest.mark.parametrize("text", ["!!not-a-spec!!", "abc$def", "ab cd", "é"])
def test_text_that_is_not_base64_is_a_damaged_link(text: str) -> None:
    with pytest.raises(LinkError, match="link is damaged \\(not base64 or JSON\\): copy the whole link again"):
        spec_from_link(text)


@pytest.mark.parametrize("raw", [b"\x00\xff\x10garbage", b"hello", b"{not json", b"[1, 2"])
def test_base64_of_garbage_is_refused_as_no_json(raw: bytes) -> None:
    with pytest.raises(SpecError, match="not valid JSON"):
        spec_from_link(_b64(raw))


def test_a_link_cut_short_says_so() -> None:
    packed = zlib.compress(_edited_tiny().to_json(indent=None).encode(), 9)
    with pytest.raises(LinkError, match="cut short"):
        spec_from_link(_b64(packed[: len(packed) // 2]))


def test_valid_json_that_is_no_network_says_what_is_wrong() -> None:
    with pytest.raises(SpecError, match='"layers"'):
        spec_from_link(_b64(zlib.compress(b'{"name": "x"}')))


def test_a_link_that_unpacks_too_far_is_refused() -> None:
    bomb = _b64(zlib.compress(b" " * 2_000_000, 9))
    with pytest.raises(LinkError, match="unpacks to more than 1,000,000 bytes; no network is that large"):
        spec_from_link(bomb)


def test_a_bomb_that_ends_exactly_at_the_cap_is_refused() -> None:
    bomb = _b64(zlib.compress(b" " * (MAX_LINK_BYTES + 1), 9))
    with pytest.raises(LinkError, match="unpacks to more than"):
        spec_from_link(bomb)


@pytest.mark.parametrize(
    "text", ["A" * (MAX_LINK_BYTES + 1), '{"name": "' + "x" * MAX_LINK_BYTES + '"}'], ids=["b64", "json"]
)
def test_a_huge_link_is_refused_before_it_is_read(text: str) -> None:
    with pytest.raises(LinkError, match="characters long; no network needs over 1,000,000"):
        spec_from_link(text)


def test_every_link_error_is_a_user_error() -> None:
    assert issubclass(LinkError, SpecError) and issubclass(LinkError, UserError)
