"""The ``symfony`` serializer for messenger: Symfony Messenger's JSON wire format, so that a PHP
Symfony app and a Python app share a transport in both directions."""

from messenger_serializer_symfony.factory import SymfonySerializerFactory
from messenger_serializer_symfony.serializer import PYTHON_STAMP_HEADER_PREFIX, SymfonySerializer

__all__ = ["PYTHON_STAMP_HEADER_PREFIX", "SymfonySerializer", "SymfonySerializerFactory"]
