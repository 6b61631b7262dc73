"""Fixtures for the data tests: an isolated environment, tiny IDX folders, a local web server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from netsqueeze.data import SPLIT_FILES, write_idx


def _tiny_arrays(n_train=20, n_test=10, *, n_classes=10, seed=0, size=(28, 28)):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        "y_train": rng.integers(0, n_classes, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        "y_test": rng.integers(0, n_classes, n_test, dtype=np.uint8),
    }


def _write_folder(folder: Path, arrays: dict, *, gz: bool = True) -> dict[str, Path]:
    """Write the four IDX files of ``arrays`` into ``folder`` under their canonical names."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, stem in SPLIT_FILES.items():
        paths[key] = write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return paths


@pytest.fixture
def tiny_arrays():
    """``tiny_arrays(n_train=20, n_test=10, *, n_classes=10, seed=0, size=(28, 28))``:
    random uint8 images and labels, keyed like :data:`SPLIT_FILES`."""
    return _tiny_arrays


@pytest.fixture
def make_folder():
    """``make_folder(path, gz=True, **tiny_arrays_kwargs) -> (arrays, paths)``."""

    def make(folder: Path, *, gz: bool = True, **kwargs):
        arrays = _tiny_arrays(**kwargs)
        return arrays, _write_folder(Path(folder), arrays, gz=gz)

    return make


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path.startswith("/short/"):
            # Promise more bytes than are sent, then close: an interrupted download.
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b" + b"\0" * 100)
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def http_server(tmp_path):
    """A web server on 127.0.0.1 serving ``tmp_path / "www"``; yields (base_url, root, requests).

    ``/short/NAME`` answers with a response cut short.
    """
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, server.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def served(http_server, make_folder):
    """Tiny MNIST-format files served under ``<url>/mnist/``: (mirror_url, arrays, md5s,
    requests)."""
    url, root, requests = http_server
    arrays, paths = make_folder(root / "mnist", gz=True)
    checksums = {p.name: md5_of(p) for p in paths.values()}
    return url + "/mnist/", arrays, checksums, requests


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture
def silent_server_url():
    """A URL whose server accepts connections but never answers (a stalled mirror)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}/mnist/"
    finally:
        s.close()
