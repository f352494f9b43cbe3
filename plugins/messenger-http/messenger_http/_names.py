"""Names shared by the plugin's modules, importable at no cost (the hooks module needs them)."""

from __future__ import annotations

__all__ = ["PLUGIN_NAME", "TOKEN_VARIABLE"]

PLUGIN_NAME = "http"
"""The plugin's name: its options are the ``[messenger.plugins.http]`` table."""
TOKEN_VARIABLE = "MESSENGER_HTTP_TOKEN"  # noqa: S105 - a variable name, not a secret
"""The environment variable holding the bearer token when nothing else gives one."""
