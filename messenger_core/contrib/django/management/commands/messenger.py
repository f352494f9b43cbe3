"""``manage.py messenger COMMAND ...``: any ``messenger`` command on the project's application."""

from __future__ import annotations

from messenger_core.contrib.django.management._forward import MessengerCommand


class Command(MessengerCommand):
    help = "the messenger command line on this project's application (--help for the commands)"
