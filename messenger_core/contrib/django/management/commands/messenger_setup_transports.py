"""``manage.py messenger_setup_transports ...``: ``messenger setup-transports ...``."""

from __future__ import annotations

from messenger_core.contrib.django.management._forward import MessengerCommand


class Command(MessengerCommand):
    help = "messenger setup-transports on this project's application (--help for its options)"
    command = "setup-transports"
