"""The Django app (``INSTALLED_APPS = [..., "messenger_core.contrib.django"]``)."""

from __future__ import annotations

from django.apps import AppConfig


class MessengerConfig(AppConfig):
    """Registers the ``messenger_*`` management commands; the application is built on first
    use (:func:`messenger_core.contrib.django.get_messenger`)."""

    name = "messenger_core.contrib.django"
    label = "messenger"
    verbose_name = "Messenger"
