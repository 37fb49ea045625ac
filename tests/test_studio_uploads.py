"""Bounded uploads against a real server process (issue #16): a 300 MB chunked upload is answered 413 while it
streams, the server's memory grows < 100 MB and its spooled temporary files never pass the limit nor stay;
sizes are reported in the limit's unit; and the 'Done means' check of DREAMMOVER_STUDIO_TOKEN."""
import os
import select
import socket
import threading
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("multipart")

from dreammover_studio.limits import StudioLimits  # noqa: E402
from test_studio_kit import TOKEN, Server, png, studio_client, submit  # noqa: E402

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("studio-up")
    (base / "tmp").mkdir()
    srv = Server(tiny_model_dir, base / "home", None, {"TMPDIR": str(base / "tmp")}).start()
    srv.tmp = base / "tmp"
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def test_token_from_the_environment_guards_the_api(server):
    with pytest.raises(urllib.error.HTTPError) as err:
        server.get("/jobs", token=None)
    assert err.value.code == 401 and err.value.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(urllib.error.HTTPError) as err:
        server.get("/jobs", token="not-" + TOKEN)
    assert err.value.code == 401
    assert server.get("/jobs").status == 200
    assert server.get("/health", token=None).status == 200


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _spooled(pid: int, folder: Path) -> int:
    """Bytes in the files the server holds open under `folder` (deleted temporary files included)."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(folder)):
                total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            pass
    return total


def _chunked_upload(port: int, total: int, chunk: int = MiB) -> tuple[bytes, int]:
    """POST /jobs with a `total`-byte photo part, Transfer-Encoding: chunked; stop sending once the server
    answers. Returns (response head, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = (f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    sock.sendall(head)

    def send_chunk(data: bytes) -> None:
        sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    sent = 0
    try:
        send_chunk(b'--XyZ\r\nContent-Disposition: form-data; name="image0"; filename="huge.png"\r\n'
                   b"Content-Type: image/png\r\n\r\n")
        block = b"\0" * chunk
        while sent < total:
            if select.select([sock], [], [], 0)[0]:  # the server has answered: stop, as a client would
                break
            send_chunk(block)
            sent += chunk
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(30)
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except (ConnectionResetError, socket.timeout):
        pass
    sock.close()
    return answer, sent


def test_300mb_chunked_upload_is_refused_while_it_streams(server):
    pid = server.proc.pid
    before, peak, spool = _rss(pid), [0], [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss(pid))
            spool[0] = max(spool[0], _spooled(pid, server.tmp))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answer, sent = _chunked_upload(server.port, 300 * MiB)
    finally:
        done.set()
        watcher.join()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"the limit" in answer or sent < 300 * MiB
    limit = 2 * 20 * MiB + MiB  # two photos of 20 MiB and the form around them
    assert sent < limit + 8 * MiB, f"sent {sent / MiB:.0f} MiB before the answer"  # (socket buffers in flight)
    assert peak[0] - before < 100 * MiB, f"server memory grew {(peak[0] - before) / MiB:.0f} MiB"
    assert spool[0] <= limit, f"{spool[0] / MiB:.0f} MiB spooled to disk"
    time.sleep(0.5)
    assert _spooled(pid, server.tmp) == 0 and list(server.tmp.iterdir()) == []  # nothing left on disk
    assert not any((server.home / "jobs").iterdir()) and server.jobs() == []
    print(f"300 MiB chunked: 413 after {sent / MiB:.0f} MiB sent; server RSS +{(peak[0] - before) / MiB:.1f} MiB, "
          f"spooled at most {spool[0] / MiB:.1f} MiB")


def test_declared_length_over_the_limit_is_refused_before_reading(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {TOKEN}\r\n"
                 "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 314572800\r\n\r\n".encode())
    sock.settimeout(10)
    answer = b""
    while data := sock.recv(65536):  # answered (and closed) without a byte of the body sent
        answer += data
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413") and b"the request is 300 MiB; the limit is 41 MiB" in answer


def test_photo_sizes_are_reported_in_the_limits_unit(tiny_dm, tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (800, 700, 3), np.uint8)  # a ~1.6 MiB PNG
    data = png(noise)
    with studio_client(tiny_dm, tmp_path / "home", limits=StudioLimits(upload_bytes=MiB)) as (client, _):
        small = png(np.zeros((64, 64, 3), np.uint8))
        r = submit(client, files={"image0": ("big.png", data, "image/png"), "image1": ("s.png", small, "image/png")})
        assert r.status_code == 413
        assert r.json()["detail"] == f"photo 1 (big.png) is {len(data) / MiB:.1f} MiB; the limit is 1 MiB per photo"
