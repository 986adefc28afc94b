"""Pulling an image over the OCI distribution API (standard library HTTP).

``GET /v2/<repo>/manifests/<tag|digest>`` (an index is narrowed to
linux/amd64), then the config and layer blobs, each verified against its
digest, into the :class:`ImageStore`. Authentication: anonymous, HTTP basic,
and the bearer-token dance (``WWW-Authenticate: Bearer realm=…``), with the
AuthConfig the kubelet passes. Registries on loopback (``localhost``,
``127.*``, ``[::1]``) are spoken to in plain HTTP, others in HTTPS.

Connection failures fail fast (a short connect timeout) with a message that
names the registry; the kubelet reports it as ErrImagePull.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import IO

from pilothouse.runtime_shim.images import oci
from pilothouse.runtime_shim.images.reference import Reference
from pilothouse.runtime_shim.images.store import ImageError, ImageRecord, ImageStore

ACCEPT = ", ".join([oci.MEDIA_MANIFEST, oci.MEDIA_INDEX, oci.DOCKER_MANIFEST,
                    oci.DOCKER_MANIFEST_LIST])
CONNECT_TIMEOUT = 5.0


class PullError(Exception):
    pass


@dataclass
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    @classmethod
    def from_auth(cls, username: str, password: str, auth: str, identity_token: str,
                  registry_token: str) -> Credentials:
        if auth and not username:
            try:
                username, _, password = base64.b64decode(auth).decode().partition(":")
            except ValueError:
                raise PullError("auth is not base64 of user:password") from None
        return cls(username, password, identity_token, registry_token)


def _base_url(registry: str) -> str:
    host = "registry-1.docker.io" if registry == "docker.io" else registry
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    loopback = bare in ("localhost", "[::1]") or bare.startswith("127.")
    return f"{'http' if loopback else 'https'}://{host}"


class _Session:
    def __init__(self, ref: Reference, creds: Credentials) -> None:
        self.ref = ref
        self.creds = creds
        self.base = _base_url(ref.registry)
        self.token = creds.registry_token

    def _open(self, url: str, accept: str = "") -> IO[bytes]:
        for attempt in range(2):
            req = urllib.request.Request(url)
            if accept:
                req.add_header("Accept", accept)
            if self.token:
                req.add_header("Authorization", f"Bearer {self.token}")
            elif self.creds.username:
                basic = base64.b64encode(
                    f"{self.creds.username}:{self.creds.password}".encode()).decode()
                req.add_header("Authorization", f"Basic {basic}")
            try:
                resp: IO[bytes] = urllib.request.urlopen(req, timeout=CONNECT_TIMEOUT)
                return resp
            except urllib.error.HTTPError as err:
                challenge = err.headers.get("WWW-Authenticate", "")
                if err.code == 401 and attempt == 0 and challenge.lower().startswith("bearer"):
                    self.token = self._fetch_token(challenge)
                    continue
                if err.code == 401:
                    raise PullError(f"pulling {self.ref}: {self.ref.registry} refused the "
                                    "credentials (401 Unauthorized)") from None
                if err.code == 404:
                    raise PullError(f"pulling {self.ref}: not found in {self.ref.registry} "
                                    f"({url})") from None
                raise PullError(f"pulling {self.ref}: {self.ref.registry} answered "
                                f"{err.code} {err.reason}") from None
            except (TimeoutError, urllib.error.URLError, OSError) as err:
                reason = getattr(err, "reason", err)
                raise PullError(f"pulling {self.ref}: registry {self.ref.registry} is "
                                f"unreachable ({self.base}): {reason}") from None
        raise PullError(f"pulling {self.ref}: authentication with {self.ref.registry} failed")

    def _fetch_token(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise PullError(f"pulling {self.ref}: bearer challenge without a realm")
        params.setdefault("scope", f"repository:{self.ref.repository}:pull")
        url = f"{realm}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url)
        if self.creds.identity_token:
            req = urllib.request.Request(realm, data=urllib.parse.urlencode({
                "grant_type": "refresh_token", "refresh_token": self.creds.identity_token,
                "service": params.get("service", ""), "scope": params["scope"]}).encode())
        elif self.creds.username:
            basic = base64.b64encode(
                f"{self.creds.username}:{self.creds.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {basic}")
        try:
            with urllib.request.urlopen(req, timeout=CONNECT_TIMEOUT) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise PullError(f"pulling {self.ref}: token service {realm} answered "
                            f"{err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise PullError(f"pulling {self.ref}: token service {realm} failed: {err}") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise PullError(f"pulling {self.ref}: token service {realm} returned no token")
        return str(token)

    def manifest(self, reference: str) -> bytes:
        url = f"{self.base}/v2/{self.ref.repository}/manifests/{reference}"
        with self._open(url, ACCEPT) as resp:
            return resp.read()

    def blob_into(self, store: ImageStore, digest: str) -> None:
        if store.has_blob(digest):
            return
        url = f"{self.base}/v2/{self.ref.repository}/blobs/{digest}"
        with self._open(url) as resp:
            try:
                store.write_blob(resp, expected=digest)
            except ImageError as err:
                raise PullError(f"pulling {self.ref}: {err}") from None


def pull(store: ImageStore, ref: Reference, creds: Credentials | None = None) -> ImageRecord:
    """Fetch ``ref`` into ``store`` (blocking; run it in a thread)."""
    session = _Session(ref, creds or Credentials())
    data = session.manifest(ref.digest or ref.tag)
    doc = json.loads(data)
    if ref.digest and oci.sha256(data) != ref.digest:
        raise PullError(f"pulling {ref}: manifest digest does not match")
    if doc.get("mediaType") in (oci.MEDIA_INDEX, oci.DOCKER_MANIFEST_LIST) or "manifests" in doc:
        chosen = [m for m in doc.get("manifests", [])
                  if (m.get("platform") or {}).get("os") == "linux"
                  and (m.get("platform") or {}).get("architecture") == "amd64"]
        if not chosen:
            raise PullError(f"pulling {ref}: no linux/amd64 image in the index")
        data = session.manifest(chosen[0]["digest"])
        doc = json.loads(data)
    manifest_digest = store.write_bytes(data)
    session.blob_into(store, doc["config"]["digest"])
    for layer in doc.get("layers", []):
        session.blob_into(store, layer["digest"])
    try:
        return store.add_image(manifest_digest, [str(ref)])
    except ImageError as err:
        raise PullError(f"pulling {ref}: {err}") from None
