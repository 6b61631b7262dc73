"""Downloads against a web server on 127.0.0.1: verified, atomic, fast to fail, with fallback."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from netsqueeze import FormatError
from netsqueeze.data import SPLIT_FILES, DownloadError, download, load
from netsqueeze.data.download import download_files, env_mirrors, env_timeout, md5_file

GZ_NAMES = [stem + ".gz" for stem in SPLIT_FILES.values()]


def md5_of(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(folder):
    """Hidden (temporary) files left in ``folder``."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_same(ds, arrays):
    for key, want in arrays.items():
        np.testing.assert_array_equal(getattr(ds, key), want)


def test_good_files_download_verify_and_load(served, isolated_env):
    url, arrays, checksums, requests = served
    ds = load("mnist", mirrors=[url], checksums=checksums, progress=False)
    assert_same(ds, arrays)
    assert ds.name == "mnist" and ds.source == str((isolated_env / "mnist").resolve())
    assert "downloaded" in ds.note and "MD5" in ds.note
    cached = isolated_env / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(GZ_NAMES)
    assert {p.name: md5_of(p) for p in cached.iterdir()} == checksums
    # Second time: from the cache, no request.
    n = len(requests)
    assert_same(load("mnist", mirrors=[url], checksums=checksums), arrays)
    assert len(requests) == n == 4


def test_progress_bar_goes_to_stderr(served, capsys):
    url, _, checksums, _ = served
    download("mnist", mirrors=[url], checksums=checksums, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "train-images-idx3-ubyte.gz" in err and "B/s" in err


def test_mirrors_from_the_environment(served, closed_port_url, monkeypatch, isolated_env):
    url, arrays, checksums, requests = served
    monkeypatch.setenv("NETSQUEEZE_MNIST_MIRRORS", f"{closed_port_url}, {url}")
    assert env_mirrors("NETSQUEEZE_MNIST_MIRRORS") == (closed_port_url, url)
    assert_same(load("mnist", checksums=checksums, progress=False), arrays)
    assert len(requests) == 4  # the dead mirror was tried once and then skipped


def test_missing_on_one_mirror_found_on_the_next(served, http_server, tmp_path):
    url, arrays, checksums, requests = served
    base = http_server[0]
    ds = load("mnist", mirrors=[base + "/empty/", url], checksums=checksums, progress=False)
    assert_same(ds, arrays)
    assert sum(r.startswith("/empty/") for r in requests) == 4  # 404 each, mirror not dropped


def test_checksum_mismatch_is_caught_and_not_kept(served, isolated_env):
    url, _, checksums, _ = served
    wrong = dict(checksums)
    wrong["t10k-images-idx3-ubyte.gz"] = "0" * 32
    with pytest.raises(FormatError) as info:
        load("mnist", mirrors=[url], checksums=wrong, progress=False)
    message = str(info.value)
    assert "checksum mismatch" in message and "t10k-images-idx3-ubyte.gz" in message
    assert "--data-dir" in message
    cached = isolated_env / "mnist"
    assert not (cached / "t10k-images-idx3-ubyte.gz").exists()
    assert leftovers(cached) == []
    # The default falls back to the sample, saying why.
    ds = load("default", mirrors=[url], checksums=wrong, progress=False)
    assert ds.name == "mnist-sample" and "checksum mismatch" in ds.note


def test_bad_copy_on_one_mirror_good_on_the_next(served, http_server, isolated_env):
    url, arrays, checksums, _ = served
    base, root, _ = http_server
    bad = root / "bad"
    bad.mkdir()
    for name in GZ_NAMES:
        (bad / name).write_bytes(b"\x1f\x8b" + b"not the real file")
    ds = load("mnist", mirrors=[base + "/bad/", url], checksums=checksums, progress=False)
    assert_same(ds, arrays)
    assert leftovers(isolated_env / "mnist") == []


def test_unreachable_mirror_fails_fast(closed_port_url, isolated_env):
    start = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        load("mnist", mirrors=[closed_port_url, closed_port_url + "other/"], progress=False)
    assert time.perf_counter() - start < 3
    message = str(info.value)
    assert closed_port_url in message
    assert "--data-dir" in message and "NETSQUEEZE_DATA" in message
    assert "NETSQUEEZE_MNIST_MIRRORS" in message
    assert leftovers(isolated_env / "mnist") == []
    assert not any((isolated_env / "mnist").glob("*.gz"))


def test_stalled_mirror_times_out(silent_server_url, closed_port_url):
    start = time.perf_counter()
    with pytest.raises(DownloadError, match="timed out|no answer"):
        load("mnist", mirrors=[silent_server_url], timeout=0.5, progress=False)
    assert time.perf_counter() - start < 4


def test_timeout_from_the_environment(monkeypatch, silent_server_url):
    monkeypatch.setenv("NETSQUEEZE_DOWNLOAD_TIMEOUT", "0.3")
    assert env_timeout() == 0.3
    start = time.perf_counter()
    with pytest.raises(DownloadError):
        load("mnist", mirrors=[silent_server_url], progress=False)
    assert time.perf_counter() - start < 3
    for bad in ("zero", "0", "-1"):
        monkeypatch.setenv("NETSQUEEZE_DOWNLOAD_TIMEOUT", bad)
        with pytest.raises(ValueError, match="NETSQUEEZE_DOWNLOAD_TIMEOUT"):
            env_timeout()


def test_interrupted_download_leaves_nothing(http_server, isolated_env):
    base = http_server[0]
    with pytest.raises(DownloadError, match="IncompleteRead|closed|bytes"):
        load("mnist", mirrors=[base + "/short/"], checksums=None, progress=False)
    assert leftovers(isolated_env / "mnist") == []
    assert not any((isolated_env / "mnist").glob("*.gz"))


def test_default_falls_back_when_nothing_is_reachable(closed_port_url):
    start = time.perf_counter()
    ds = load("default", mirrors=[closed_port_url], progress=False)
    assert time.perf_counter() - start < 3
    assert ds.name == "mnist-sample" and ds.n_train == 4000
    assert ds.note.startswith("full MNIST unavailable (not found, download failed:")
    assert "--data-dir" in ds.note and "\n" not in ds.note


def test_default_with_the_mirror_variable(closed_port_url, monkeypatch):
    monkeypatch.setenv("NETSQUEEZE_MNIST_MIRRORS", closed_port_url)
    assert load(progress=False).name == "mnist-sample"


def test_default_downloads_when_it_can(served):
    url, arrays, checksums, _ = served
    ds = load(mirrors=[url], checksums=checksums, progress=False)
    assert ds.name == "mnist"
    assert_same(ds, arrays)


def test_partial_cache_is_completed(served, isolated_env):
    url, arrays, checksums, requests = served
    download_files(GZ_NAMES[:2], isolated_env / "mnist", mirrors=[url], checksums=checksums,
                   progress=False)
    assert_same(load("mnist", mirrors=[url], checksums=checksums, progress=False), arrays)
    assert len(requests) == 4


def test_download_to_a_folder(served, tmp_path):
    url, _, checksums, _ = served
    folder = download("mnist", dest=tmp_path / "here", mirrors=[url], checksums=checksums,
                      progress=False)
    assert folder == tmp_path / "here"
    assert {p.name: md5_file(p) for p in folder.iterdir()} == checksums


def test_refuses_files_without_checksum(served, tmp_path):
    url, _, checksums, _ = served
    partial = {k: v for k, v in checksums.items() if not k.startswith("t10k")}
    with pytest.raises(ValueError, match="no checksum known for t10k"):
        download("mnist", dest=tmp_path / "x", mirrors=[url], checksums=partial)
    assert not (tmp_path / "x").exists()


def test_published_checksums_are_complete():
    from netsqueeze.data import FASHION_MNIST, MNIST

    for spec in (MNIST, FASHION_MNIST):
        assert sorted(spec.md5) == sorted(GZ_NAMES)
        assert all(len(v) == 32 and int(v, 16) >= 0 for v in spec.md5.values())
        assert spec.mirrors and spec.mirrors_env


@pytest.mark.mnist
def test_published_mnist_checksums_match_the_real_files(mnist_dir):
    from netsqueeze.data import MNIST

    assert {name: md5_file(mnist_dir / name) for name in GZ_NAMES} == dict(MNIST.md5)
