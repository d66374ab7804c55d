"""A network in a link: `?preset=NAME` for a preset as it is, else `?spec=` and the spec packed into the URL.

The packed form is url-safe base64 of zlib-compressed compact JSON, without '=' padding. Reading also takes
compact JSON itself and plain base64 of JSON. A link comes from anyone, so its size is capped before and
after unpacking: a small link that inflates to gigabytes is refused, never unpacked.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib

from s7core.spec import MAX_SPEC_BYTES, PRESETS, NetworkSpec, SpecError, get_preset, spec_from_json

MAX_LINK_BYTES = MAX_SPEC_BYTES  # a ?spec= value may be, and may unpack to, at most as much as a spec file


class LinkError(SpecError):
    """A ?spec= value that holds no network: damaged, cut short, or too large."""


def canonical_json(spec: NetworkSpec) -> str:
    """A compact JSON text of `spec` with sorted keys: equal texts mean equal networks."""
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def spec_to_link(spec: NetworkSpec) -> dict[str, str]:
    """Query parameters that reload `spec`: {'preset': NAME} when it is a preset as-is, else {'spec': packed}."""
    if spec.name in PRESETS and canonical_json(get_preset(spec.name)) == canonical_json(spec):
        return {"preset": spec.name}
    packed = zlib.compress(json.dumps(spec.to_dict(), separators=(",", ":")).encode(), 9)
    return {"spec": base64.urlsafe_b64encode(packed).decode().rstrip("=")}


def spec_from_link(text: str) -> NetworkSpec:
    """The validated spec in a ?spec= value; LinkError (or SpecError, for a bad network) otherwise."""
    text = text.strip()
    if len(text) > MAX_LINK_BYTES:
        raise LinkError(f"the ?spec= link is {len(text):,} characters long; no network needs over {MAX_LINK_BYTES:,}")
    if text.startswith(("{", "[")):
        return spec_from_json(text)
    return spec_from_json(_unpack(_base64(text)))


def _base64(text: str) -> bytes:
    """The bytes of url-safe base64 text, its '=' padding optional."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise LinkError("the ?spec= link is damaged (not base64 or JSON): copy the whole link again") from None


def _unpack(raw: bytes) -> bytes:
    """zlib-packed bytes unpacked (at most MAX_LINK_BYTES of them); bytes that are not zlib data as they are."""
    unpacker = zlib.decompressobj()
    try:
        unpacked = unpacker.decompress(raw, MAX_LINK_BYTES)
    except zlib.error:
        return raw  # plain base64 of JSON is accepted too
    if unpacker.eof:
        return unpacked
    if unpacker.unconsumed_tail or len(unpacked) == MAX_LINK_BYTES:
        raise LinkError(f"the ?spec= link unpacks to more than {MAX_LINK_BYTES:,} bytes; no network is that large")
    raise LinkError("the ?spec= link is cut short (its packed network ends early): copy the whole link again")
