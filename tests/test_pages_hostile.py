"""Hostile input through the pages themselves: a spec upload, a ?spec= link and an image upload, each refused in
one red message while the page goes on drawing (never an exception box)."""

from __future__ import annotations

import base64
import io
import json
import zlib

import numpy as np
import pytest
from PIL import Image
from test_images import png_header_only
from test_pages_design import _app, _metric, _rf_page

from pages import _shared as sh
from s7core.spec import get_preset, spec_from_dict
from s7core.summary import summarize

HUGE_CHANNELS = b'{"layers": [{"type": "conv", "channels": ' + b"7" * 5000 + b"}]}"
# Valid, but 8.3 billion parameters: refused by the size cap before any model is built.
BILLIONS = json.dumps(
    [
        *({"type": "conv", "channels": c, "kernel": 3, "padding": 1} for c in (64, 128, 256, 512)),
        {"type": "conv", "channels": 4096, "kernel": 63, "padding": 31},
        {"type": "gap"}, {"type": "flatten"}, {"type": "linear", "channels": 10},
    ]
).encode()  # fmt: skip
CAPPED = "layer 4 (conv): 4,096 channels with a 63x63 kernel on 512 input channels bring this network to 8.33 billion"


def _errors(at) -> list[str]:
    return [e.value for e in at.main.error]


def test_a_spec_upload_with_a_5000_digit_number_is_refused_and_the_network_kept() -> None:
    at = _app(preset="tiny")
    at.file_uploader(key="arch_upload").upload("huge.json", HUGE_CHANNELS, "application/json")
    at.run()
    assert not at.exception
    assert any("huge.json: layer 0 (conv): channels is a number 5,000 characters long" in e for e in _errors(at))
    assert spec_from_dict(at.session_state[sh.SPEC_KEY]) == get_preset("tiny")
    assert _metric(at, "Parameters") == f"{summarize(get_preset('tiny')).total_params:,}"


@pytest.mark.parametrize(
    "link",
    [
        HUGE_CHANNELS.decode(),
        base64.urlsafe_b64encode(zlib.compress(HUGE_CHANNELS)).decode().rstrip("="),
        base64.urlsafe_b64encode(zlib.compress(b" " * 50_000_000, 9)).decode().rstrip("="),
        "[" * 50_000,
    ],
    ids=["json", "packed", "inflates-to-50MB", "deep"],
)
def test_a_hostile_link_shows_a_message_and_the_default_network(link: str) -> None:
    at = _app(spec=link)
    assert not at.exception
    assert any("The link's network could not be loaded" in e for e in _errors(at))
    assert _metric(at, "Parameters")  # the page still draws its totals


def test_an_uploaded_spec_over_the_size_cap_is_refused_and_the_network_kept() -> None:
    at = _app(preset="tiny")
    at.file_uploader(key="arch_upload").upload("wide.json", BILLIONS, "application/json")
    at.run()
    assert not at.exception
    assert any(f"wide.json: {CAPPED}" in e and "the limit is 50 million" in e for e in _errors(at)), _errors(at)
    assert spec_from_dict(at.session_state[sh.SPEC_KEY]) == get_preset("tiny")


@pytest.mark.parametrize("packed", [False, True], ids=["json", "packed"])
def test_a_link_to_a_spec_over_the_size_cap_is_refused(packed: bool) -> None:
    link = base64.urlsafe_b64encode(zlib.compress(BILLIONS)).decode().rstrip("=") if packed else BILLIONS.decode()
    at = _app(spec=link)
    assert not at.exception
    assert any("The link's network could not be loaded" in e and CAPPED in e for e in _errors(at)), _errors(at)
    assert _metric(at, "Parameters") == f"{summarize(get_preset('seed')).total_params:,}"  # the default network


DATA_FOLDERS = {
    "parent": ("/srv/../etc", "has a '..' part"),
    "nul": ("/tmp/data\0x", "holds a NUL character"),
    "newline": ("/tmp/data\n/etc", "holds a newline or control character"),
    "long": ("/" + "d" * 5000, "a folder path has at most 4,096"),
    "long-part": ("/tmp/" + "d" * 300, "of over 255 bytes"),
    "missing": ("/no/such/folder/anywhere", "the folder /no/such/folder/anywhere does not exist — check the path"),
}


@pytest.mark.parametrize("key", sorted(DATA_FOLDERS))
def test_the_sidebars_data_folder_box_refuses_a_hostile_path_in_words(key: str) -> None:
    text, needle = DATA_FOLDERS[key]
    at = _app(preset="tiny")
    (box,) = [t for t in at.sidebar.text_input if t.label == "Data folder"]
    box.input(text).run()
    assert not at.exception, [e.message for e in at.exception]
    shown = [e.value for e in (*at.sidebar.error, *at.sidebar.warning)]
    assert any(needle in m for m in shown), shown
    at.switch_page("pages/train.py").run()  # a page that reads the folder says so too, and launches nothing
    assert not at.exception, [e.message for e in at.exception]
    assert any(needle in e for e in _errors(at)), _errors(at)
    (launch,) = [b for b in at.button if b.label == "Launch training"]
    assert launch.disabled


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("bomb.png", png_header_only(60_000, 60_000), "header claims far more pixels"),
        ("big.png", png_header_only(10_000, 10_000), "10000x10000 pixels"),
        ("half.png", _png(Image.fromarray(np.full((40, 40, 3), 9, np.uint8)))[:60], "damaged or cut short"),
    ],
    ids=["bomb", "10000x10000", "truncated"],
)
def test_a_hostile_image_upload_is_refused_and_the_page_draws_on(name: str, data: bytes, needle: str) -> None:
    at = _rf_page(preset="tiny")
    at.radio(key="rf_source").set_value("Upload").run()
    at.file_uploader(key="rf_upload").upload(name, data, "image/png")
    at.run()
    assert not at.exception
    assert any(name in e and needle in e for e in _errors(at))
    assert any("synthetic image 0" in c.value for c in at.main.caption)


def test_a_16_bit_upload_is_shown_resized() -> None:
    grey = Image.fromarray(np.linspace(0, 65535, 50 * 70).reshape(50, 70).astype(np.uint16))
    at = _rf_page(preset="tiny")
    at.radio(key="rf_source").set_value("Upload").run()
    at.file_uploader(key="rf_upload").upload("deep.png", _png(grey), "image/png")
    at.run()
    assert not at.exception and not _errors(at)
    assert any("deep.png, resized from 70x50 to 32x32" in c.value for c in at.main.caption)
