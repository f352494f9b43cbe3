"""The messenger application: configuration from ``messenger.toml``, handlers from
:mod:`shop.handlers`. The command line finds it through ``app = "shop.app:messenger"``."""

from __future__ import annotations

from pathlib import Path

from messenger_core import Messenger
from shop import handlers

HERE = Path(__file__).resolve().parent.parent

messenger = Messenger.from_config(HERE / "messenger.toml")
messenger.scan(handlers)
