"""``manage.py messenger_stop_workers ...``: ``messenger stop-workers ...``."""

from __future__ import annotations

from messenger_core.contrib.django.management._forward import MessengerCommand


class Command(MessengerCommand):
    help = "messenger stop-workers on this project's application (--help for its options)"
    command = "stop-workers"
