"""Test doubles that are not backends: the loopback OpenAI-compatible server used by tests, benches and demos.

    from reasongen.testing.openai_server import start_stub_server, spawn_stub_process, Faults
    python -m reasongen.testing.openai_server --port 8199
"""
