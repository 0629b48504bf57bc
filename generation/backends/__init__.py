"""Backends behind one protocol, chosen by name from a registry."""

from generation.backends.base import Backend, Prompt, create_backend, register

__all__ = ["Backend", "Prompt", "create_backend", "register"]
