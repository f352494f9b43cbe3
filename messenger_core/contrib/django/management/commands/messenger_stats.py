"""``manage.py messenger_stats ...``: ``messenger stats ...``."""

from __future__ import annotations

from messenger_core.contrib.django.management._forward import MessengerCommand


class Command(MessengerCommand):
    help = "messenger stats on this project's application (--help for its options)"
    command = "stats"
