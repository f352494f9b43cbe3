"""The core's default serializer, ``json``: messages and stamps as UTF-8 JSON via cattrs.

Wire format (DESIGN.md section 6):

- **body**: the message unstructured by the converter (:func:`make_converter`; its module
  docstring lists how each Python type is written), as compact UTF-8 JSON. Fields keep their
  Python names unless the ``field_names`` option, the class or the field says otherwise
  (:mod:`messenger_core.serialization.naming`). NaN and infinities
  are refused, since they are not JSON. On input, a number out of the range of a float
  (``1e999``) and a ``\\uD800``-style escape of a lone surrogate are refused as well (in the
  body and in stamp headers): such a message could be read but never written again, so it
  could neither be retried nor parked.
- ``type`` header: the message's registered name (:meth:`MessageTypeRegistry.name_of`).
- ``Content-Type: application/json``. On input the header may be absent; if present it must be
  a JSON media type (``application/json``, ``…+json``), so that a message written by another
  serializer (a PHP ``serialize()`` body, say) fails clearly.
- one ``X-Message-Stamp-<stamp name>`` header per stamp class, holding a JSON array of the
  stamps of that class in the order they were added. :class:`NonSendableStamp` subclasses are
  never written, and a header naming one is ignored on input: such stamps describe the state
  of one process and must not be injected from the wire. Decoding yields the stamps grouped by
  class, in header order (the order between stamps of different classes is not kept).
- stamp headers whose name the registry does not know are kept verbatim in one
  :class:`UnknownStampsStamp` (added after the decoded stamps) and written back unchanged, so
  they survive a decode/encode round trip. A stamp of a known class wins over a verbatim header
  of the same name. Other unknown headers are ignored.
- an :class:`UndecodableMessage` is written back as its original body and headers, plus the
  envelope's own sendable stamps (where the original headers already hold a JSON array for the
  same stamp class, the new stamps are appended to it, so earlier error details are kept), plus
  an ``X-Message-Decoding-Error`` header with the reason (one line, at most 1000 characters).
  That header is informational: decoding ignores it.

The JSON text is written by orjson when the ``messenger-core[fast]`` extra is installed
(:data:`JSON_BACKEND` says which), else by the standard library's :mod:`json` (which always
reads it): the two accept, refuse and mean the same; only the spelling of a float's exponent may
differ (``1e-07``, ``1e-7``).

Every decoding failure raises :class:`MessageDecodingError` naming the message type and, where
it applies, the field path (``items[2].price``, ``X-Message-Stamp-…[0].retry_count``). Nothing
else escapes ``decode``: an unexpected exception (nesting deeper than the recursion limit, a
header that is not a string) becomes a ``MessageDecodingError`` saying so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError

from messenger_core.envelope import Envelope
from messenger_core.errors import ConfigurationError, MessageDecodingError
from messenger_core.message_types import MessageTypeRegistry
from messenger_core.serialization._converter import TAG_KEY, json_kind, make_converter
from messenger_core.serialization._json_hooks import STAMP_HEADER_PREFIX, ClassHooks, StampHeader
from messenger_core.serialization._json_text import backend
from messenger_core.serialization.naming import check_style
from messenger_core.stamps import Stamp, UnknownStampsStamp
from messenger_core.transport import TransportMessage, UndecodableMessage

__all__ = [
    "CONTENT_TYPE",
    "DECODING_ERROR_HEADER",
    "JSON_BACKEND",
    "STAMP_HEADER_PREFIX",
    "TAG_KEY",
    "JsonSerializer",
    "JsonSerializerFactory",
    "make_converter",
]

CONTENT_TYPE: Final = "application/json"
DECODING_ERROR_HEADER: Final = "X-Message-Decoding-Error"

_MAX_REASON = 1000
_MAX_LISTED_ERRORS = 5
_CACHE_SIZE = 512  # entries per cache; cleared when full


# The JSON backend (orjson with the ``fast`` extra, else the standard library): see _json_text.
_backend = backend()
JSON_BACKEND: Final = _backend.name
"""The JSON library in use: ``"orjson"`` (the ``messenger-core[fast]`` extra) or ``"json"``."""
_dumps = _backend.dumps
_dumps_bytes = _backend.dumps_bytes
_loads = _backend.loads
# A JSON ``\\uXXXX`` escape of a surrogate: the only way a decoded string can hold a lone
# surrogate (UTF-8 input cannot), which could not be encoded as UTF-8 again.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_encodable(text: str, value: Any, *, from_utf8: bool = True) -> None:
    """Raise ``ValueError`` if ``value`` (decoded from ``text``) holds a lone surrogate.

    Such a string cannot be written as UTF-8 again: the message could not be re-sent for a
    retry nor parked, so it is refused when it is read. Cheap unless ``text`` has a
    surrogate escape. Text that was not decoded from UTF-8 (a header) may also hold one raw.
    """
    if not from_utf8:
        _check_text(text)
    if _SURROGATE_ESCAPE.search(text) is None:
        return
    try:
        _dumps(value).encode()
    except UnicodeEncodeError:
        raise ValueError(
            "it holds a lone surrogate (a \\uD800-\\uDFFF escape that is not part of a pair), "
            "which cannot be written as UTF-8"
        ) from None


def _check_text(text: str) -> None:
    """Raise ``ValueError`` if ``text`` holds a lone surrogate (it cannot be UTF-8)."""
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError(
                "it holds a lone surrogate character, which cannot be written as UTF-8"
            ) from None


class JsonSerializer:
    """Encodes envelopes as JSON transport messages and back; see the module docstring.

    ``registry`` names message and stamp classes; nothing is ever imported from a header.
    ``converter`` defaults to :func:`make_converter`; pass one made by it with hooks of your own
    added to support more types. Per-class functions are built on first use and cached.

    Stamps are values, and the same ones travel again and again (a bus name, transport names):
    the JSON of a stamp object is kept for a while and reused when the same object is encoded
    again, and the stamps decoded from a header value are reused for an equal value. Only
    hashable (immutable) stamps are remembered; the caches are bounded.
    """

    def __init__(
        self, registry: MessageTypeRegistry, *, converter: cattrs.Converter | None = None
    ) -> None:
        self._registry = registry
        self._converter = converter if converter is not None else make_converter()
        hooks = ClassHooks(registry, self._converter)
        # The caches and the functions filling them, as attributes: read on every message.
        self._message_encoders = hooks.message_encoders
        self._message_decoders = hooks.message_decoders
        self._stamp_encoders = hooks.stamp_encoders
        self._stamp_headers = hooks.stamp_headers
        self._message_encoder = hooks.message_encoder
        self._message_decoder = hooks.message_decoder
        self._stamp_encoder = hooks.stamp_encoder
        self._stamp_header = hooks.stamp_header
        # id(stamp) -> (stamp, its JSON); holding the stamp keeps its id from being reused.
        self._stamp_json: dict[int, tuple[Stamp, str]] = {}

    @property
    def converter(self) -> cattrs.Converter:
        """The cattrs converter in use."""
        return self._converter

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, envelope: Envelope) -> TransportMessage:
        """The wire form of ``envelope``.

        Raises ``TypeError``/``ValueError`` for values that cannot be written as JSON, and
        ``ConfigurationError`` for a class with field types the converter cannot handle.
        """
        message = envelope.message
        cls = message.__class__
        encoder = self._message_encoders.get(cls)
        if encoder is None:
            if cls is UndecodableMessage:
                return self._encode_undecodable(message, envelope.stamps)
            encoder = self._message_encoder(cls)
        name, unstructure = encoder
        headers = {"type": name, "Content-Type": CONTENT_TYPE}
        if envelope.stamps:
            groups, verbatim = self._group_stamps(envelope.stamps)
            for header, items in groups.items():
                headers[header] = "[" + ",".join(items) + "]"
            for header, value in verbatim.items():
                headers.setdefault(header, value)
        try:
            body = _dumps_bytes(unstructure(message))
        except (TypeError, ValueError) as error:
            error.add_note(f"while encoding message {name!r} as JSON")
            raise
        return TransportMessage(body, headers)

    def _group_stamps(self, stamps: Iterable[Stamp]) -> tuple[dict[str, list[str]], dict[str, str]]:
        """The JSON of each sendable stamp by header (in order), and verbatim unknown headers."""
        groups: dict[str, list[str]] = {}
        verbatim: dict[str, str] = {}
        cache = self._stamp_json
        for stamp in stamps:
            cls = stamp.__class__
            encoder = self._stamp_encoders.get(cls) or self._stamp_encoder(cls)
            header = encoder.header
            if header is None:
                if cls is UnknownStampsStamp:
                    for name, value in stamp.headers.items():  # type: ignore[attr-defined]
                        if name.startswith(STAMP_HEADER_PREFIX):
                            verbatim[name] = value
                continue
            cached = cache.get(id(stamp))
            if cached is not None and cached[0] is stamp:
                text = cached[1]
            else:
                text = _dumps(encoder.unstructure(stamp))
                if _is_hashable(stamp):  # a mutable stamp may change before its next use
                    if len(cache) >= _CACHE_SIZE:
                        cache.clear()
                    cache[id(stamp)] = (stamp, text)
            items = groups.get(header)
            if items is None:
                groups[header] = [text]
            else:
                items.append(text)
        return groups, verbatim

    def _encode_undecodable(
        self, message: UndecodableMessage, stamps: tuple[Stamp, ...]
    ) -> TransportMessage:
        headers = dict(message.headers)
        groups, verbatim = self._group_stamps(stamps)
        # The envelope's stamps were decoded from these very headers (decode_stamps), plus
        # what was added since: they replace the headers of their class.
        for header, items in groups.items():
            headers[header] = "[" + ",".join(items) + "]"
        headers.update(verbatim)
        reason = " ".join(message.reason.split())
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 3] + "..."
        headers[DECODING_ERROR_HEADER] = reason
        return TransportMessage(message.body, headers)

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, message: TransportMessage) -> Envelope:
        """The envelope ``message`` was made from; raises ``MessageDecodingError``.

        Whatever goes wrong while reading one message (headers that are not strings, nesting
        deeper than the recursion limit, a hook that raised) is a ``MessageDecodingError``
        saying so: one bad message must never stop the receiver reading it.
        """
        try:
            return self._decode(message)
        except MessageDecodingError:
            raise
        except Exception as error:
            raise MessageDecodingError(
                f"unexpected {type(error).__name__} while decoding: {_short(error)}",
                type_name=_type_name_or_none(message),
            ) from error

    def _decode(self, message: TransportMessage) -> Envelope:
        headers = message.headers
        type_name = headers.get("type")
        if type_name is None:
            type_name = _header_ignoring_case(headers, "type")
            if type_name is None:
                raise MessageDecodingError("the 'type' header is missing")
        cls = self._registry.resolve(type_name)
        if cls is None:
            raise MessageDecodingError(
                "this message type is not registered (register its class, or this name as an "
                "alias of it, in the MessageTypeRegistry)",
                type_name=type_name,
            )
        content_type = headers.get("Content-Type")
        if content_type is not None and content_type != CONTENT_TYPE:
            _check_content_type(content_type, type_name)
        # Just "type" and "Content-Type": no stamp headers to look for.
        simple = len(headers) == 2 and content_type is not None
        structure = self._message_decoders.get(cls) or self._message_decoder(cls, type_name)
        try:
            text = str(message.body, "utf-8")
        except (UnicodeDecodeError, TypeError) as error:
            raise MessageDecodingError(
                f"the body is not UTF-8 ({error})", type_name=type_name
            ) from None
        try:
            data = _loads(text)
        except ValueError as error:
            raise MessageDecodingError(
                f"the body is not JSON ({error})", type_name=type_name
            ) from None
        except RecursionError as error:
            raise MessageDecodingError(
                f"the body is not JSON that can be read (nested too deeply: {_short(error)})",
                type_name=type_name,
            ) from None
        try:
            _check_encodable(text, data)
        except (ValueError, RecursionError) as error:
            raise MessageDecodingError(
                f"the body cannot be accepted: {_short(error)}", type_name=type_name
            ) from None
        try:
            decoded = structure(data, cls)
        except Exception as error:
            raise _structure_error(error, type_name, "") from None
        if simple:
            return Envelope(decoded)
        return Envelope(decoded, self._decode_stamps(headers, type_name))

    def decode_stamps(self, message: TransportMessage) -> list[Stamp]:
        """Only the stamps of ``message`` (for one whose body or type cannot be decoded).

        ``decode_or_quarantine`` keeps them on the ``UndecodableMessage`` envelope, so that a
        parked message still shows its error details and original transport.
        """
        type_name = _type_name_or_none(message) or "(no type header)"
        try:
            return self._decode_stamps(message.headers, type_name)
        except MessageDecodingError:
            raise
        except Exception as error:
            raise MessageDecodingError(
                f"unexpected {type(error).__name__} while decoding the stamps: {_short(error)}",
                type_name=type_name,
            ) from error

    def _decode_stamps(self, headers: Mapping[str, str], type_name: str) -> list[Stamp]:
        stamps: list[Stamp] = []
        unknown: dict[str, str] | None = None
        known = self._stamp_headers
        for header, value in headers.items():
            entry = known.get(header)
            if entry is None:
                if not header.startswith(STAMP_HEADER_PREFIX):
                    continue
                entry = self._stamp_header(header, type_name)
                if entry is None:
                    try:
                        _check_text(header)
                        _check_text(value)  # written back verbatim: it must be encodable
                    except ValueError as error:
                        raise MessageDecodingError(
                            f"the stamp header cannot be accepted: {error}",
                            type_name=type_name,
                            field=header.encode(errors="backslashreplace").decode(),
                        ) from None
                    if unknown is None:
                        unknown = {}
                    unknown[header] = value
                    continue
            decoded = entry.decoded.get(value)
            if decoded is None:
                if entry.structure is None:
                    continue
                decoded = self._decode_stamp_header(entry, header, value, type_name)
            stamps += decoded
        if unknown is not None:
            stamps.append(UnknownStampsStamp(headers=unknown))
        return stamps

    def _decode_stamp_header(
        self, entry: StampHeader, header: str, value: str, type_name: str
    ) -> tuple[Stamp, ...]:
        structure, cls = entry.structure, entry.cls
        assert structure is not None
        try:
            items = _loads(value)
        except (ValueError, TypeError) as error:
            raise MessageDecodingError(
                f"the stamp header is not JSON ({error})", type_name=type_name, field=header
            ) from None
        except RecursionError as error:
            raise MessageDecodingError(
                "the stamp header is not JSON that can be read "
                f"(nested too deeply: {_short(error)})",
                type_name=type_name,
                field=header,
            ) from None
        try:
            _check_encodable(value, items, from_utf8=False)
        except (ValueError, RecursionError) as error:
            raise MessageDecodingError(
                f"the stamp header cannot be accepted: {_short(error)}",
                type_name=type_name,
                field=header,
            ) from None
        if items.__class__ is not list:
            raise MessageDecodingError(
                f"the stamp header holds {json_kind(items)}, expected a JSON array",
                type_name=type_name,
                field=header,
            )
        decoded: list[Stamp] = []
        for index, item in enumerate(items):
            try:
                decoded.append(structure(item, cls))
            except Exception as error:
                raise _structure_error(error, type_name, f"{header}[{index}]") from None
        stamps = tuple(decoded)
        if not _is_hashable(stamps):  # only immutable stamps may be shared between envelopes
            return stamps
        if len(entry.decoded) >= _CACHE_SIZE:
            entry.decoded.clear()
        entry.decoded[value] = stamps
        return stamps


class JsonSerializerFactory:
    """The ``json`` entry of the ``messenger.serializers`` group.

    Its one option is ``field_names`` (``"as_is"``, the default, or ``"camelCase"``): how the
    fields of message classes are named on the wire (see
    :mod:`messenger_core.serialization.naming`). Any other option is a
    :class:`ConfigurationError` naming it.
    """

    def __call__(self, registry: MessageTypeRegistry, options: Mapping[str, Any]) -> JsonSerializer:
        """A :class:`JsonSerializer` over ``registry``."""
        unknown = sorted(set(options) - {"field_names"})
        if unknown:
            names = ", ".join(repr(name) for name in unknown)
            raise ConfigurationError(
                f"unknown option(s) for the json serializer: {names}; it takes field_names"
            )
        style = check_style(
            options.get("field_names", "as_is"), "json serializer option field_names"
        )
        return JsonSerializer(registry, converter=make_converter(style))


# -- helpers ------------------------------------------------------------------------------------


def _is_hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _short(error: BaseException) -> str:
    """The message of ``error`` on one line, at most a few hundred characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _type_name_or_none(message: TransportMessage) -> str | None:
    """The ``type`` header of ``message`` if it is a string (for error messages)."""
    try:
        name = _header_ignoring_case(message.headers, "type")
    except Exception:
        return None
    return name if isinstance(name, str) else None


def _header_ignoring_case(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _check_content_type(content_type: str, type_name: str) -> None:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != CONTENT_TYPE and not media_type.endswith("+json"):
        raise MessageDecodingError(
            f"the Content-Type is {content_type!r}, not JSON (was this message written by "
            "another serializer?)",
            type_name=type_name,
        )


def _leaf_errors(error: BaseException, path: str) -> list[tuple[str, str]]:
    """Each elementary failure inside a cattrs validation error, with its field path."""
    if isinstance(error, ClassValidationError):
        with_notes, without = error.group_exceptions()
        found: list[tuple[str, str]] = []
        for sub, note in with_notes:
            found += _leaf_errors(sub, f"{path}.{note.name}" if path else note.name)
        for sub in without:
            found += _leaf_errors(sub, path)
        return found
    if isinstance(error, IterableValidationError):
        found = []
        for sub, item_note in error.group_exceptions()[0]:
            found += _leaf_errors(sub, f"{path}[{item_note.index!r}]")
        for sub in error.group_exceptions()[1]:
            found += _leaf_errors(sub, path)
        return found
    return [(path, _describe(error))]


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return "required field missing"
    if isinstance(error, TypeError | ValueError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _structure_error(error: Exception, type_name: str, base: str) -> MessageDecodingError:
    """A ``MessageDecodingError`` for the first failure in ``error``, listing a few others."""
    leaves = _leaf_errors(error, base) or [(base, _describe(error))]
    path, reason = leaves[0]
    others = [f"{p or '(top level)'}: {r}" for p, r in leaves[1 : 1 + _MAX_LISTED_ERRORS]]
    if others:
        more = len(leaves) - 1 - len(others)
        reason += "; also " + "; ".join(others) + (f"; and {more} more" if more else "")
    return MessageDecodingError(reason, type_name=type_name, field=path or None)
