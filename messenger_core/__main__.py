"""``python -m messenger_core``: the ``messenger`` command line."""

from messenger_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
