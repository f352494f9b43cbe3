"""Integrations with web frameworks; each imports its framework, and only its own module does."""
