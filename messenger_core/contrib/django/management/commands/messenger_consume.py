"""``manage.py messenger_consume ...``: ``messenger consume ...``."""

from __future__ import annotations

from messenger_core.contrib.django.management._forward import MessengerCommand


class Command(MessengerCommand):
    help = "messenger consume on this project's application (--help for its options)"
    command = "consume"
