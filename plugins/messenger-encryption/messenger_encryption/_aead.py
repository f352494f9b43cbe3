"""What both key rings share: the associated data of either format, the header checks, and
the decryption errors (which name key ids, transports and buses, never a key)."""

from __future__ import annotations

from messenger_core.errors import MessageDecodingError
from messenger_encryption.format_v1 import associated_data_v1
from messenger_encryption.message import FORMAT_VERSION, TYPE_NAME
from messenger_encryption.sealed import Sealed, associated_data_v2, header

READ_VERSIONS = (1, FORMAT_VERSION)


def associated_data(sealed: Sealed, transport_name: str, bus_name: str) -> bytes:
    """What ``sealed`` authenticates besides its ciphertext, in its format."""
    if sealed.version == FORMAT_VERSION:
        sealed_header = header(sealed.algorithm, sealed.key_id, sealed.ephemeral_key)
        return associated_data_v2(sealed_header, transport_name, bus_name)
    return associated_data_v1(sealed, transport_name, bus_name)


def check_header(sealed: Sealed, algorithm: str) -> None:
    """Refuse a format version or an algorithm this key ring does not use."""
    if sealed.version not in READ_VERSIONS:
        raise MessageDecodingError(
            f"encryption format version {sealed.version!r} is not known here "
            f"(this plugin writes version {FORMAT_VERSION} and reads versions "
            f"{', '.join(map(str, READ_VERSIONS))})",
            type_name=TYPE_NAME,
        )
    if sealed.algorithm != algorithm:
        raise MessageDecodingError(
            f"algorithm {sealed.algorithm!r} is not the one this process's key ring uses "
            f"({algorithm}): producers and workers must use the same mode",
            type_name=TYPE_NAME,
        )


def failed(sealed: Sealed, transport_name: str, bus_name: str) -> MessageDecodingError:
    """The error for a ciphertext that does not authenticate (no detail helps an attacker)."""
    return MessageDecodingError(
        f"the ciphertext does not authenticate with key {sealed.key_id!r}: it was altered, "
        "encrypted with another key of that id, or moved from another transport or bus "
        f"(this is transport {transport_name!r}, bus {bus_name!r})",
        type_name=TYPE_NAME,
    )


def unknown_key(sealed: Sealed, known: tuple[str, ...]) -> MessageDecodingError:
    """The error for a key id this process does not hold."""
    listed = ", ".join(known) or "none"
    return MessageDecodingError(
        f"encrypted with key {sealed.key_id!r}, which this process does not hold "
        f"(its keys: {listed}); add that key to decrypt it",
        type_name=TYPE_NAME,
    )
