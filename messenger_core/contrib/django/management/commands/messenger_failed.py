"""``manage.py messenger_failed ...``: ``messenger failed ...``."""

from __future__ import annotations

from messenger_core.contrib.django.management._forward import MessengerCommand


class Command(MessengerCommand):
    help = "messenger failed on this project's application (--help for its options)"
    command = "failed"
