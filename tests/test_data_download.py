"""``python -m lt_paper data cifar10`` against a local HTTP server (no internet needed): download, sha256
check, unpacking into place; a wrong checksum keeps nothing; no network says what to get and where."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from lt_paper.cli import main
from lt_paper.data.content_hash import files_fingerprint
from lt_paper.data.cifar import image_folder_files


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "served"``; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tar_gz(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["data", "cifar10", *args])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


BATCHES = ("batches.meta", "data_batch_1", "test_batch")  # a small stand-in for the real seven files


def test_the_original_files_are_downloaded_checked_and_put_where_the_loaders_look(tmp_path, server, capsys):
    served, url = server
    sha = _tar_gz(served / "cifar-10-python.tar.gz", {f"cifar-10-batches-py/{n}": n.encode() * 100 for n in BATCHES})
    into = tmp_path / "downloads"
    code, out, err = _run(capsys, "--into", str(into), "--url", f"{url}/cifar-10-python.tar.gz", "--sha256", sha)
    assert code == 0, err
    assert sorted(p.name for p in (into / "cifar-10-batches-py").iterdir()) == sorted(BATCHES)
    assert (into / "cifar-10-batches-py" / "test_batch").read_bytes() == b"test_batch" * 100
    assert sorted(p.name for p in into.iterdir()) == ["cifar-10-batches-py"]  # no archive or staging left
    assert f"is in {into / 'cifar-10-batches-py'}: set data_root = {str(into)!r}" in out

    code, out, _ = _run(capsys, "--into", str(into), "--url", f"{url}/cifar-10-python.tar.gz", "--sha256", sha)
    assert code == 0 and "is in" in out  # already there: nothing downloaded again


def test_a_download_with_another_checksum_is_refused_and_nothing_is_kept(tmp_path, server, capsys):
    served, url = server
    _tar_gz(served / "cifar-10-python.tar.gz", {f"cifar-10-batches-py/{n}": b"x" for n in BATCHES})
    into = tmp_path / "downloads"
    code, _, err = _run(capsys, "--into", str(into), "--url", f"{url}/cifar-10-python.tar.gz", "--sha256", "0" * 64)
    assert code == 2 and "error: " in err and f"!= the expected {'0' * 64}" in err, err
    assert list(into.iterdir()) == []


def test_the_jpeg_repository_archive_is_checked_by_the_content_of_its_images(tmp_path, server, capsys):
    served, url = server
    members = {f"CIFAR-10-images-d7d05618/{split}/{c}/0000.jpg": f"{split}{c}".encode()
               for split in ("train", "test") for c in ("airplane", "truck")}
    members["CIFAR-10-images-d7d05618/README.md"] = b"not an image: not in the content hash"
    _tar_gz(served / "repo.tar.gz", members)
    reference = tmp_path / "reference"
    for name, data in members.items():
        (reference / name).parent.mkdir(parents=True, exist_ok=True)
        (reference / name).write_bytes(data)
    tree = reference / "CIFAR-10-images-d7d05618"
    content = files_fingerprint(tree, image_folder_files(tree)).rsplit(" ", 1)[1]
    into = tmp_path / "downloads"
    code, out, err = _run(capsys, "--into", str(into), "--source", "jpeg", "--url", f"{url}/repo.tar.gz",
                          "--sha256", content)
    assert code == 0, err
    assert (into / "cifar10-jpeg" / "test" / "truck" / "0000.jpg").read_bytes() == b"testtruck"
    assert f"set data_root = {str(into / 'cifar10-jpeg')!r}" in out


def test_without_a_network_it_says_what_to_download_and_where_to_put_it(tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on: the connection is refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    into = tmp_path / "downloads"
    code, _, err = _run(capsys, "--into", str(into), "--url", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    assert code == 1
    assert "could not download CIFAR-10" in err and f"127.0.0.1:{port}" in err
    assert "Download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in err  # the original, whatever was tried
    assert f"unpack it into {into}/" in err and "cifar-10-batches-py" in err and err.count("\n") == 1
    assert not into.exists() or list(into.iterdir()) == []
