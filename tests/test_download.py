"""Downloads against a local HTTP server: normal, cut off and resumed, corrupt, unsafe, 404, no network, zips."""

import io
import os
import re
import shlex
import socket
import stat
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from cyclegan.cli.main import main
from cyclegan.data.download import download_dataset
from cyclegan.io.download import DownloadError, cache_dir, download, safe_extract_zip
from cyclegan.nets.generators import build_generator
from cyclegan.pretrained import PRETRAINED, check_state_dict, pretrained_file


class FixtureServer:
    """Serves `files` (URL path -> bytes) with Range support; can cut responses off half-way or ignore Range."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_next: set[str] = set()
        self.ignore_range = False
        # path -> (bytes sent at once, then bytes per piece, seconds between pieces): a slow or stalling server
        self.trickle: dict[str, tuple[int, int, float]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.path in server.cut_next:
                    # Promise the whole file, send half, hang up: what a dropped connection looks like.
                    server.cut_next.discard(self.path)
                    payload = payload[: len(payload) // 2]
                if self.path in server.trickle:
                    head, piece, pause = server.trickle[self.path]
                    self.wfile.write(payload[:head])
                    for offset in range(head, len(payload), piece):
                        time.sleep(pause)
                        try:
                            self.wfile.write(payload[offset:offset + piece])
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            return
                    return
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    fixture = FixtureServer()
    yield fixture
    fixture.close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CYCLEGAN_PRETRAINED_URL", raising=False)
    monkeypatch.delenv("CYCLEGAN_DATASET_URL", raising=False)
    return tmp_path / "cache"


def tensor_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_state():
    return build_generator("resnet_9blocks", 3, 3, 4, "instance", False).state_dict()


@pytest.fixture
def model_bytes(model_state):
    return tensor_bytes(model_state)


def cached_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file())


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("CYCLEGAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "cyclegan"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "cyclegan"


def test_normal_download_loads_and_is_cached(server, cache, model_bytes, model_state):
    server.files["/horse2zebra.pth"] = model_bytes
    path = pretrained_file("horse2zebra", base_url=server.url, show_progress=True)
    assert path == cache / "pretrained" / "horse2zebra.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert list(state) == list(model_state)
    assert all(torch.equal(state[key], model_state[key]) for key in model_state)
    assert len(server.requests) == 1 and server.requests[0][1] is None  # no Range on a fresh start
    assert pretrained_file("horse2zebra", base_url=server.url) == path
    assert len(server.requests) == 1  # the second call is served from the cache


def test_base_url_from_environment(server, cache, model_bytes, monkeypatch):
    server.files["/models/style_monet.pth"] = model_bytes
    monkeypatch.setenv("CYCLEGAN_PRETRAINED_URL", server.url + "/models/")
    assert pretrained_file("style_monet", show_progress=False).read_bytes() == model_bytes


def test_cut_off_download_is_kept_and_resumed(server, cache, model_bytes):
    server.files["/zebra2horse.pth"] = model_bytes
    server.cut_next.add("/zebra2horse.pth")
    with pytest.raises(DownloadError, match="resume") as error:
        pretrained_file("zebra2horse", base_url=server.url, show_progress=False)
    assert "/zebra2horse.pth" in str(error.value)
    part = cache / "pretrained" / "zebra2horse.pth.part"
    half = part.stat().st_size
    assert 0 < half < len(model_bytes)
    assert not (cache / "pretrained" / "zebra2horse.pth").exists()

    path = pretrained_file("zebra2horse", base_url=server.url, show_progress=False)
    assert server.requests[-1] == ("/zebra2horse.pth", f"bytes={half}-")
    assert path.read_bytes() == model_bytes
    assert not part.exists()


def test_server_ignoring_range_starts_over(server, cache, model_bytes):
    server.files["/monet2photo.pth"] = model_bytes
    server.cut_next.add("/monet2photo.pth")
    with pytest.raises(DownloadError):
        pretrained_file("monet2photo", base_url=server.url, show_progress=False)
    server.ignore_range = True
    path = pretrained_file("monet2photo", base_url=server.url, show_progress=False)
    assert server.requests[-1][1] is not None  # it asked to resume, got 200, and rewrote the file
    assert path.read_bytes() == model_bytes


def test_complete_part_file_answered_with_416_is_checked_and_placed(server, tmp_path, model_bytes):
    server.files["/file.pth"] = model_bytes
    target = tmp_path / "out" / "file.pth"
    target.parent.mkdir()
    target.with_name("file.pth.part").write_bytes(model_bytes)
    download(server.url + "/file.pth", target, show_progress=False, validate=check_state_dict)
    assert server.requests == [("/file.pth", f"bytes={len(model_bytes)}-")]
    assert target.read_bytes() == model_bytes


def test_size_mismatch_with_expected_size(server, tmp_path, model_bytes):
    server.files["/file.pth"] = model_bytes
    with pytest.raises(DownloadError, match="expected"):
        download(server.url + "/file.pth", tmp_path / "file.pth", expected_size=len(model_bytes) + 1,
                 show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_file_is_deleted(server, cache, model_bytes):
    server.files["/apple2orange.pth"] = os.urandom(len(model_bytes))
    with pytest.raises(DownloadError, match="corrupt") as error:
        pretrained_file("apple2orange", base_url=server.url, show_progress=False)
    assert "run the command again" in str(error.value)
    assert cached_files(cache) == []


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_pickle_that_runs_code_is_refused(server, cache, tmp_path):
    marker = tmp_path / "MARKER"
    server.files["/style_vangogh.pth"] = tensor_bytes({"weight": torch.zeros(2), "payload": RunsCode(marker)})
    with pytest.raises(DownloadError, match="unsafe"):
        pretrained_file("style_vangogh", base_url=server.url, show_progress=False)
    assert not marker.exists()
    assert cached_files(cache) == []


def test_not_a_state_dict_is_refused(server, cache):
    server.files["/sat2map.pth"] = tensor_bytes([torch.zeros(2)])
    with pytest.raises(DownloadError, match="state dict"):
        pretrained_file("sat2map", base_url=server.url, show_progress=False)


def test_404_names_the_url(server, cache):
    with pytest.raises(DownloadError, match="404") as error:
        pretrained_file("map2sat", base_url=server.url, show_progress=False)
    assert f"{server.url}/map2sat.pth" in str(error.value) and "base URL" in str(error.value)
    assert cached_files(cache) == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_network_gives_a_clear_message(cache):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DownloadError, match="could not reach") as error:
        pretrained_file("horse2zebra", base_url=url, show_progress=False)
    message = str(error.value)
    assert f"{url}/horse2zebra.pth" in message and "by hand" in message
    assert str(cache / "pretrained" / "horse2zebra.pth") in message


def test_unknown_name_suggests_close_matches():
    with pytest.raises(DownloadError, match="horse2zebra") as error:
        pretrained_file("hourse2zebra")
    assert "cyclegan pretrained list" in str(error.value)


def test_catalogue_holds_the_official_names():
    official = {"apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite", "horse2zebra",
                "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe", "style_vangogh",
                "sat2map", "map2sat", "cityscapes_photo2label", "cityscapes_label2photo", "facades_photo2label",
                "facades_label2photo", "iphone2dslr_flower"}
    assert set(PRETRAINED) == official


# ---- data sets ----------------------------------------------------------------------------------------------------

def make_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def official_zip(name: str, top: str | None = None) -> bytes:
    prefix = f"{top or name}/"
    return make_zip({f"{prefix}{folder}/{i}.png": b"png" * (i + 1)
                     for folder in ("trainA", "trainB", "testA", "testB") for i in range(2)})


def test_dataset_download_and_extract(server, cache, tmp_path):
    server.files["/horse2zebra.zip"] = official_zip("horse2zebra")
    root = tmp_path / "datasets"
    folder = download_dataset("horse2zebra", root, base_url=server.url, show_progress=False)
    assert folder == root / "horse2zebra"
    assert sorted(p.name for p in folder.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert (folder / "trainB" / "1.png").read_bytes() == b"pngpng"
    assert sorted(p.name for p in root.iterdir()) == ["horse2zebra"]  # no temporary folder left
    assert download_dataset("horse2zebra", root, base_url=server.url) == folder
    assert len(server.requests) == 1  # already there: no download


def test_dataset_zip_without_top_folder(server, tmp_path):
    server.files["/facades.zip"] = make_zip({f"{d}/a.png": b"x" for d in ("trainA", "trainB")})
    folder = download_dataset("facades", tmp_path / "d", base_url=server.url, show_progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["trainA", "trainB"]


def test_dataset_download_resumes(server, cache, tmp_path):
    server.files["/maps.zip"] = official_zip("maps")
    server.cut_next.add("/maps.zip")
    with pytest.raises(DownloadError, match="resume"):
        download_dataset("maps", tmp_path / "d", base_url=server.url, show_progress=False)
    assert not (tmp_path / "d" / "maps").exists()
    folder = download_dataset("maps", tmp_path / "d", base_url=server.url, show_progress=False)
    assert server.requests[-1][1] is not None and (folder / "testB").is_dir()


@pytest.mark.parametrize("evil", ["../evil.txt", "/abs.txt", "horse2zebra/../../evil.txt", "C:/evil.txt"])
def test_member_escaping_the_folder_is_refused(server, cache, tmp_path, evil):
    members = {f"horse2zebra/{d}/0.png": b"x" for d in ("trainA", "trainB")}
    server.files["/horse2zebra.zip"] = make_zip({**members, evil: b"evil"})
    root = tmp_path / "root" / "datasets"
    with pytest.raises(DownloadError, match="refusing archive member") as error:
        download_dataset("horse2zebra", root, base_url=server.url, show_progress=False)
    assert repr(evil) in str(error.value)
    assert list(root.iterdir()) == []  # neither the data set nor a half-extracted temporary folder
    assert not any(p.name in ("evil.txt", "abs.txt") for p in tmp_path.rglob("*"))
    assert cached_files(cache) == []


def test_symlink_member_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("set/trainA/0.png", b"x")
        link = zipfile.ZipInfo("set/trainB")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc")
    (tmp_path / "set.zip").write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="symbolic link"):
        safe_extract_zip(tmp_path / "set.zip", tmp_path / "out" / "set")
    assert list((tmp_path / "out").iterdir()) == []


def test_corrupt_zip_is_refused(server, cache, tmp_path):
    server.files["/apple2orange.zip"] = os.urandom(2000)
    with pytest.raises(DownloadError, match="corrupt"):
        download_dataset("apple2orange", tmp_path / "d", base_url=server.url, show_progress=False)
    assert cached_files(cache) == [] and not (tmp_path / "d" / "apple2orange").exists()


def test_zip_failing_its_crc_is_refused(server, cache, tmp_path):
    data = bytearray(make_zip({"x/trainA/0.png": b"A" * 100, "x/trainB/0.png": b"B" * 100}, zipfile.ZIP_STORED))
    data[data.index(b"A" * 100) + 50] ^= 0xFF  # damage the stored bytes, not the structure
    server.files["/ae_photos.zip"] = bytes(data)
    with pytest.raises(DownloadError, match="corrupt archive"):
        download_dataset("ae_photos", tmp_path / "d", base_url=server.url, show_progress=False)
    assert cached_files(cache) == []


def test_archive_with_wrong_layout_is_refused(server, cache, tmp_path):
    server.files["/vangogh2photo.zip"] = make_zip({"vangogh2photo/images/0.png": b"x"})
    root = tmp_path / "d"
    with pytest.raises(DownloadError, match="found: images"):
        download_dataset("vangogh2photo", root, base_url=server.url, show_progress=False)
    assert list(root.iterdir()) == []


# ---- command line -------------------------------------------------------------------------------------------------

def test_cli_pretrained_list_and_download(server, cache, model_bytes, capsys):
    assert main(["pretrained", "list"]) == 0
    listing = capsys.readouterr().out
    assert "horse2zebra" in listing and "style_monet" in listing and "yes" not in listing

    server.files["/horse2zebra.pth"] = model_bytes
    assert main(["pretrained", "download", "horse2zebra", "--base-url", server.url, "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "pretrained" / "horse2zebra.pth")
    assert main(["pretrained", "list"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("horse2zebra "))
    assert "yes" in line


def test_cli_errors_exit_2_with_a_suggestion(server, capsys):
    assert main(["pretrained", "download", "horse2zebr", "--base-url", server.url, "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cyclegan: error:") and "did you mean horse2zebra" in error
    assert main(["pretrained", "download", "horse2zebra", "--base-url", server.url, "--quiet"]) == 2
    assert "404" in capsys.readouterr().err


def test_cli_data_list_and_download(server, tmp_path, capsys):
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    assert "horse2zebra" in listing and "cityscapes" in listing and "ae_photos" in listing
    server.files["/iphone2dslr_flower.zip"] = official_zip("iphone2dslr_flower")
    root = tmp_path / "datasets"
    assert main(["data", "download", "iphone2dslr_flower", "--root", str(root), "--base-url", server.url,
                 "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(root / "iphone2dslr_flower")
    assert (root / "iphone2dslr_flower" / "testA").is_dir()


def test_translate_with_a_pretrained_model_end_to_end(server, cache, model_state, model_bytes, tmp_path):
    """`cyclegan translate --pretrained NAME` downloads the official generator once, recognises it and translates;
    the Python API gives the same pixels."""
    from PIL import Image

    from cyclegan.translate import Translator

    server.files["/horse2zebra.pth"] = model_bytes
    Image.new("RGB", (30, 22), "brown").save(tmp_path / "horse.png")
    out = tmp_path / "zebras"
    argv = ["translate", "--pretrained", "horse2zebra", str(tmp_path / "horse.png"), "--out", str(out),
            "--base-url", server.url, "--quiet", "--device", "cpu"]
    assert main(argv) == 0
    assert Image.open(out / "horse.png").size == (30, 22)
    assert main(argv) == 0
    assert len(server.requests) == 1  # cached after the first download
    translator = Translator.from_pretrained("horse2zebra", server.url, device="cpu", show_progress=False)
    assert translator.config.ngf == 4 and translator.config.gen_arch == "resnet_9blocks"
    expected = translator(Image.open(tmp_path / "horse.png"))
    assert expected.tobytes() == Image.open(out / "horse.png").tobytes()
    assert main(["translate", "--pretrained", "hors2zebra", str(tmp_path / "horse.png"), "--quiet"]) == 2


def test_a_trickling_download_is_abandoned_and_its_part_kept_for_a_resume(server, tmp_path, model_bytes):
    """A byte every 0.1 s never trips the per-read socket timeout; the stall check (here 100 bytes a second)
    does, after about a second, and the next call resumes the part."""
    server.files["/slow.pth"] = model_bytes
    server.trickle["/slow.pth"] = (1000, 1, 0.1)
    target = tmp_path / "slow.pth"
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"the download of .*/slow.pth stalled: \d+ bytes in \d+ s \(less than "
                                            r"100 bytes in 1 s\); the partial file .*slow.pth.part is kept"):
        download(f"{server.url}/slow.pth", target, show_progress=False, timeout=5, stall_seconds=1.0,
                 stall_bytes=100)
    assert time.monotonic() - started < 4
    part = tmp_path / "slow.pth.part"
    kept = part.stat().st_size
    assert 1000 <= kept < 1100 and not target.exists()
    assert part.read_bytes() == model_bytes[:kept]
    del server.trickle["/slow.pth"]
    download(f"{server.url}/slow.pth", target, show_progress=False, stall_seconds=1.0, stall_bytes=100)
    assert target.read_bytes() == model_bytes
    assert server.requests[-1] == ("/slow.pth", f"bytes={kept}-")  # resumed where the stalled transfer stopped


def test_a_slow_but_steady_download_is_not_abandoned(server, tmp_path):
    """600 bytes at 60 bytes per 0.1 s: above the floor (60 bytes per 0.3 s) in every window, so it completes."""
    body = bytes(range(200)) * 3
    server.files["/steady.bin"] = body
    server.trickle["/steady.bin"] = (0, 60, 0.1)
    target = download(f"{server.url}/steady.bin", tmp_path / "steady.bin", show_progress=False,
                      stall_seconds=0.3, stall_bytes=60)
    assert target.read_bytes() == body
