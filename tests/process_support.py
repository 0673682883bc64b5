"""Kill a real process at a named point: start it, wait for a word on its stderr, SIGKILL it."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional


def kill_when_said(argv: list[str], word: str, *, env: dict, cwd: Path,
                   before_kill: Optional[Callable[[], None]] = None, timeout: float = 120.0) -> None:
    """Start ``argv``; when its stderr says ``word``, call ``before_kill`` (assertions on the
    half-done state), then SIGKILL it.  The process is always reaped; fails when it ends first."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd=cwd)
    seen = b""
    try:
        deadline = time.monotonic() + timeout
        while word.encode() not in seen:
            assert time.monotonic() < deadline, f"{word!r} not said; stderr: {seen[-2000:]!r}"
            if select.select([proc.stderr], [], [], 0.1)[0]:
                chunk = os.read(proc.stderr.fileno(), 65536)
                seen += chunk
                if chunk:
                    continue
            assert proc.poll() is None, f"ended (status {proc.returncode}) first: {seen[-2000:]!r}"
        if before_kill is not None:
            before_kill()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
