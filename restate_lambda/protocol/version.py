"""Protocol and manifest versions, their content types, and negotiation helpers."""

from __future__ import annotations

from enum import IntEnum

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class ProtocolVersion(IntEnum):
    """Service (invocation) protocol versions that matter today."""

    V5 = 5
    V6 = 6
    V7 = 7


#: Invocation protocol versions this codec speaks.
SUPPORTED_PROTOCOL_VERSIONS: tuple[int, ...] = (5, 6)
MIN_PROTOCOL_VERSION = 5
MAX_PROTOCOL_VERSION = 6

#: Endpoint-manifest (discovery) versions we can read.
SUPPORTED_MANIFEST_VERSIONS: tuple[int, ...] = (1, 2, 3, 4)

_INVOCATION_PREFIX = "application/vnd.restate.invocation.v"
_MANIFEST_PREFIX = "application/vnd.restate.endpointmanifest.v"
_MANIFEST_SUFFIX = "+json"


def invocation_content_type(version: int) -> str:
    """``application/vnd.restate.invocation.v{version}``."""
    return f"{_INVOCATION_PREFIX}{version}"


def manifest_content_type(version: int) -> str:
    """``application/vnd.restate.endpointmanifest.v{version}+json``."""
    return f"{_MANIFEST_PREFIX}{version}{_MANIFEST_SUFFIX}"


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _version_between(media: str, prefix: str, suffix: str = "") -> int | None:
    if not (media.startswith(prefix) and media.endswith(suffix)):
        return None
    digits = media[len(prefix) : len(media) - len(suffix)]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def parse_invocation_content_type(content_type: str | None) -> int | None:
    """Protocol version of an invocation content type, or None if it is not one."""
    if not content_type:
        return None
    return _version_between(_media_type(content_type), _INVOCATION_PREFIX)


def parse_manifest_content_type(content_type: str | None) -> int | None:
    """Manifest version of an endpoint-manifest content type, or None if it is not one."""
    if not content_type:
        return None
    return _version_between(_media_type(content_type), _MANIFEST_PREFIX, _MANIFEST_SUFFIX)


def negotiate_protocol_version(
    min_version: int,
    max_version: int,
    supported: Iterable[int] = SUPPORTED_PROTOCOL_VERSIONS,
) -> int | None:
    """Highest version in ``supported`` within the deployment's [min, max], or None."""
    common = [v for v in supported if min_version <= v <= max_version]
    return max(common) if common else None


def _accept_entries(accept: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for part in accept.split(","):
        pieces = part.split(";")
        media = pieces[0].strip().lower()
        if not media:
            continue
        q = 1.0
        for param in pieces[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        out.append((media, q))
    return out


def negotiate_manifest_version(
    accept: str | None,
    supported: Iterable[int] = SUPPORTED_MANIFEST_VERSIONS,
    *,
    default: int | None = None,
) -> int | None:
    """Pick the highest manifest version both the ``Accept`` header and we support.

    Entries with ``q=0`` are ignored. Without an Accept header, ``default`` is returned
    (the Python SDK assumes v2; the TypeScript SDK refuses). Returns None when nothing
    matches (answer 415).
    """
    if not accept or not accept.strip():
        return default
    wanted = {
        v
        for media, q in _accept_entries(accept)
        if q > 0 and (v := parse_manifest_content_type(media)) is not None
    }
    common = wanted.intersection(supported)
    return max(common) if common else None


def manifest_accept_header(versions: Iterable[int] = (4, 3, 2, 1)) -> str:
    """The Accept header a runtime sends to ``/discover`` (preferred version first)."""
    return ", ".join(manifest_content_type(v) for v in versions)


def negotiate_invocation_content_type(
    accept: str | None, supported: Iterable[int] = SUPPORTED_PROTOCOL_VERSIONS
) -> int | None:
    """Highest supported invocation protocol version named in an Accept/Content-Type header."""
    if not accept:
        return None
    wanted = {
        v
        for media, q in _accept_entries(accept)
        if q > 0 and (v := parse_invocation_content_type(media)) is not None
    }
    common = wanted.intersection(supported)
    return max(common) if common else None
