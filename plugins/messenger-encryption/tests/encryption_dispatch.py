"""``python -m encryption_dispatch confidential|public TEXT...``: dispatch from a process of its
own (a producer), one message per text, with the application of ``encryption_app``."""

from __future__ import annotations

import sys

from encryption_app import ENCRYPTED_BUS, Confidential, Public, create_app


def main(argv: list[str]) -> int:
    """Dispatch the messages; exit code 0 once they are sent."""
    kind, *texts = argv
    messenger = create_app()
    for text in texts:
        if kind == "confidential":
            messenger.buses[ENCRYPTED_BUS].dispatch(Confidential(text))
        else:
            messenger.bus.dispatch(Public(text))
    messenger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
