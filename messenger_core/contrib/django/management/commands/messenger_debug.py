"""``manage.py messenger_debug ...``: ``messenger debug ...``."""

from __future__ import annotations

from messenger_core.contrib.django.management._forward import MessengerCommand


class Command(MessengerCommand):
    help = "messenger debug on this project's application (--help for its options)"
    command = "debug"
