"""Private services for the chaos run, so it can kill and restart them freely.

A private PostgreSQL cluster and Redis server on their own ports (the machine's shared ones are never
touched), the fault-injecting OpenAI-compatible stub, and the reasongen worker processes.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]) if glob.glob("/usr/lib/postgresql/*/bin") else None


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def wait_until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f}s")


class PrivatePostgres:
    def __init__(self, root: Path, port: int):
        self.data, self.port, self.log = root / "pgdata", port, root / "postgres.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *args]),
                       check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        if PG_BIN is None:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.data.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data.parent, "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]),
                       check=True, stdout=subprocess.DEVNULL)
        self._ctl("-o", self._opts(), "start")

    def _opts(self) -> str:
        return f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")

    def outage(self, seconds: float) -> None:
        """Down for a while (immediate stop: no clean shutdown), then up again with crash recovery."""
        self._ctl("-m", "immediate", "stop")
        time.sleep(seconds)
        self._ctl("-o", self._opts(), "start")

    def crash(self, down_s: float = 1.0) -> None:
        """SIGKILL the postmaster (its backends die with it), then start the cluster again."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        for child in children:  # as on a machine crash: its backends die with it (else they hold shared memory)
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not _alive(pid) and not any(map(_alive, children)), 30, "postgres exit")
        time.sleep(down_s)
        # Orphaned backends hold the shared memory for a moment; start retries until they are gone.
        wait_until(self._try_start, 60, "postgres after crash")

    def _try_start(self) -> bool:
        try:
            self._ctl("-o", self._opts(), "start")
            return True
        except subprocess.CalledProcessError:
            return False

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")


class PrivateRedis:
    def __init__(self, root: Path, port: int):
        self.port, self.root, self.proc = port, root, None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, cwd=self.root)
        import redis

        wait_until(lambda: _pings(redis.Redis(port=self.port)), 20, "redis")

    def restart_empty(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()


def _children(pid: int) -> list[int]:
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _pings(client) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


class Processes:
    """Long-running child processes with their logs, killable one by one."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env, self.procs = root, env, {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=self.root)  # builds and runs are written here, not where the bench started
        self.procs[name] = (proc, argv)
        return proc

    def kill(self, name: str) -> None:
        proc, _ = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self, name: str) -> None:
        self.start(name, self.procs[name][1])

    def stop_all(self) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def reasongen(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]
