"""PullImage from a reachable registry: a small OCI distribution server on loopback."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from pilothouse.gen.cri.runtime.v1 import api_pb2 as cri
from pilothouse.runtime_shim.images import oci

from .conftest import Shim

pytestmark = pytest.mark.slow
IMAGE = oci.build(tag="unused", cmd=("echo", "pulled"))
TOKEN = "t0ken"


class Registry(ThreadingHTTPServer):
    auth = "none"  # none | basic | bearer
    requests: list[str]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Registry

    def log_message(self, *args: object) -> None:
        pass

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        if self.server.auth == "basic":
            return header == "Basic " + base64.b64encode(b"alice:secret").decode()
        if self.server.auth == "bearer":
            return header == f"Bearer {TOKEN}"
        return True

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path.startswith("/token"):
            ok = self.headers.get("Authorization") == "Basic " + base64.b64encode(
                b"alice:secret").decode()
            self._send(200 if ok else 401, json.dumps({"token": TOKEN}).encode(),
                       "application/json")
            return
        if not self._authorised():
            self.send_response(401)
            if self.server.auth == "basic":
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
            else:
                self.send_header("WWW-Authenticate", f'Bearer realm="http://{self.server.host}'
                                 '/token",service="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/v2/team/app/manifests/v1":
            self._send(200, IMAGE.blobs[IMAGE.manifest_digest], oci.MEDIA_MANIFEST)
        elif self.path.startswith("/v2/team/app/blobs/") and self.path.rsplit("/", 1)[
                1] in IMAGE.blobs:
            self._send(200, IMAGE.blobs[self.path.rsplit("/", 1)[1]],
                       "application/octet-stream")
        else:
            self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json")

    def _send(self, code: int, body: bytes, media: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = Registry(("127.0.0.1", 0), Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def auth(user: str = "alice", password: str = "secret") -> cri.AuthConfig:
    return cri.AuthConfig(username=user, password=password)


@pytest.mark.parametrize("mode", ["none", "basic", "bearer"])
async def test_pull_runs_the_pulled_image(process_shim: Shim, registry: Registry,
                                          mode: str) -> None:
    registry.auth = mode
    ref = f"{registry.host}/team/app:v1"
    pulled = await process_shim.images.PullImage(cri.PullImageRequest(
        image=cri.ImageSpec(image=ref), auth=auth() if mode != "none" else None))
    assert pulled.image_ref == IMAGE.config_digest
    status = await process_shim.images.ImageStatus(cri.ImageStatusRequest(
        image=cri.ImageSpec(image=ref)))
    assert status.image.repo_tags == [ref]
    sb = await process_shim.run_sandbox("pulled")
    cid = await process_shim.run(sb, "c", image=ref)
    assert (await process_shim.wait_exited(cid)).exit_code == 0
    # a second pull is answered from the store
    before = len(registry.requests)
    await process_shim.images.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref)))
    assert len(registry.requests) == before


async def test_wrong_credentials_and_unknown_tags_fail_clearly(
    process_shim: Shim, registry: Registry
) -> None:
    registry.auth = "basic"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await process_shim.images.PullImage(cri.PullImageRequest(
            image=cri.ImageSpec(image=f"{registry.host}/team/app:v1"),
            auth=auth(password="wrong")))
    assert "401" in (info.value.details() or "")
    registry.auth = "none"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await process_shim.images.PullImage(cri.PullImageRequest(
            image=cri.ImageSpec(image=f"{registry.host}/team/app:v2")))
    assert "not found" in (info.value.details() or "")
