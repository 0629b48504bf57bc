"""The backend plugin hook: a module named in REASONGEN_WORKER_IMPORTS registers a backend when imported."""

from __future__ import annotations

import sys

import pytest

from generation.backends import create_backend
from generation.backends.base import _REGISTRY
from reasongen.settings import Settings

PLUGIN = '''
from generation.backends import register
from generation.backends.fake import FakeBackend


class EchoBackend(FakeBackend):
    name = "echo"

    @classmethod
    def make(cls, settings, **options):
        return cls(**options)


register("echo", "{module}:EchoBackend.make")
'''


def test_a_plugin_module_from_settings_registers_its_backend(tmp_path, monkeypatch):
    module = "reasongen_test_echo_plugin"
    (tmp_path / f"{module}.py").write_text(PLUGIN.format(module=module), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(_REGISTRY, "echo", raising=False)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ValueError, match="Unknown backend 'echo'; choose one of: .*fake"):
        create_backend("echo", Settings(database_url="sqlite://"))
    backend = create_backend("echo", Settings(database_url="sqlite://", worker_imports=[module]))
    assert backend.name == "echo" and "echo" in _REGISTRY
    monkeypatch.delitem(_REGISTRY, "echo")
