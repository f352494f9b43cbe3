"""``python -m e2e_dispatch KIND ID``: dispatch one message of the e2e app from this process.

A module of its own, so that the message classes keep their ``e2e_app.`` type names (run as
``__main__``, ``e2e_app`` would define ``__main__.Ping`` instead).
"""

from __future__ import annotations

import sys

from e2e_app import KINDS, messenger, record


def main(argv: list[str]) -> None:
    """Dispatch ``KIND ID`` on the default bus (it is routed to a SQLite transport)."""
    kind, message_id = argv
    messenger.bus.dispatch(KINDS[kind](message_id))
    messenger.close()
    record("dispatched", message_id)


if __name__ == "__main__":
    main(sys.argv[1:])
