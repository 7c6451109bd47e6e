"""Starting an iommud daemon from a checkout, for test runs: ``with IommudDaemon() as d: Client(d.url)``.

The checkout is found from ``IOMMUD_REPO``, else upwards from the working directory and from this file. The
daemon runs from the built ``dist/src/cli/iommud.js`` when it is at least as new as every file under ``src/``,
otherwise from the sources through tsx (``node --import tsx src/cli/iommud.ts``; a fresh clone needs only
``npm ci``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence, Union

__all__ = ["IommudDaemon", "find_repo", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just had free on ``host`` (bound and released: another process could take it, rarely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _is_repo(d: Path) -> bool:
    try:
        return json.loads((d / "package.json").read_text()).get("name") == "iommud" and ((d / "src/cli/iommud.ts").exists() or (d / "dist/src/cli/iommud.js").exists())
    except (OSError, ValueError):
        return False


def find_repo(start: Union[str, Path, None] = None) -> Path:
    """The iommud checkout: ``IOMMUD_REPO``, else the nearest directory upwards (from ``start``, the working
    directory, then this file) whose package.json names iommud."""
    env = os.environ.get("IOMMUD_REPO")
    if env:
        if not _is_repo(Path(env)):
            raise FileNotFoundError(f"IOMMUD_REPO={env} is not an iommud checkout")
        return Path(env).resolve()
    for origin in [p for p in (start, os.getcwd(), Path(__file__).resolve().parent) if p is not None]:
        d = Path(origin).resolve()
        for cand in (d, *d.parents):
            if _is_repo(cand):
                return cand
    raise FileNotFoundError("no iommud checkout found: run from inside one, set IOMMUD_REPO, or give --iommud-url")


def _newest(root: Path) -> float:
    return max((p.stat().st_mtime for p in root.rglob("*.ts")), default=0.0)


def daemon_command(repo: Path, node: Optional[str] = None) -> List[str]:
    """How to run the daemon of ``repo``: the build when it is current, else the sources through tsx."""
    node = node or os.environ.get("IOMMUD_NODE") or shutil.which("node")
    if not node:
        raise FileNotFoundError("node is not on PATH (iommud needs Node.js 20 or newer)")
    built = repo / "dist/src/cli/iommud.js"
    source = repo / "src/cli/iommud.ts"
    has_tsx = (repo / "node_modules/tsx").is_dir()
    if built.exists() and (not source.exists() or not has_tsx or built.stat().st_mtime >= _newest(repo / "src")):
        return [node, str(built)]
    if source.exists() and has_tsx:
        return [node, "--import", "tsx", str(source)]
    raise FileNotFoundError(f"{repo}: neither a current build (npm run build) nor tsx (npm ci) to run the sources with")


class IommudDaemon:
    """One daemon process on a loopback port. ``start()`` waits until ``/health`` answers; ``stop()`` sends
    SIGTERM (SIGKILL after ``grace`` s); ``restart()`` keeps the port and data dir, so clients reconnect to the
    same URL and find their persisted sessions."""

    def __init__(
        self,
        *,
        repo: Union[str, Path, None] = None,
        port: Optional[int] = None,
        host: str = "127.0.0.1",
        data_dir: Union[str, Path, None] = None,
        args: Sequence[str] = (),
        env: Optional[Dict[str, str]] = None,
        log_path: Union[str, Path, None] = None,
    ) -> None:
        self.repo = Path(repo).resolve() if repo else find_repo()
        self.host = host
        self.port = port or free_port(host)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.args = list(args)
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="iommud-")) / "iommud.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> List[str]:
        cmd = daemon_command(self.repo) + ["--host", self.host, "--port", str(self.port)]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        return cmd + self.args

    def start(self, timeout: float = 90.0) -> str:
        if self.proc is not None and self.proc.poll() is None:
            return self.url
        env = {**os.environ, "LOG_LEVEL": os.environ.get("IOMMUD_LOG_LEVEL", "warn"), **self.env}
        for k in ("PORT", "HOST", "IOMMUD_DATA_DIR"):
            env.pop(k, None)  # the command line says where, not the caller's environment
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.repo, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"iommud exited with {self.proc.returncode} at start: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"iommud did not answer /health within {timeout}s: {self.log_tail()}")

    def stop(self, grace: float = 10.0) -> Optional[int]:
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None
        return p.returncode

    def restart(self, timeout: float = 90.0) -> str:
        self.stop()
        return self.start(timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> "IommudDaemon":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
