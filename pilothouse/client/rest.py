"""``RestTransport``: the Kubernetes REST/JSON API over ``httpx.AsyncClient``.

Paths are Kubernetes' own (``/api/v1/namespaces/{ns}/pods/{name}/status``,
``/apis/apps/v1/...``); objects travel as JSON through
``pilothouse.api.serialization`` (decoded leniently: a newer server's extra
fields are ignored); a watch is one streamed response of JSON lines. Every
non-2xx answer becomes an ``APIError`` from its Status body.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

import httpx
from google.protobuf.message import Message

from pilothouse.api.codec import DecodeError
from pilothouse.api.kinds import Kind, KindRegistry
from pilothouse.api.serialization import dumps, object_from_dict, object_to_dict
from pilothouse.client.errors import APIConnectionError, APIError
from pilothouse.client.transport import (
    PATCH_CONTENT_TYPES,
    DeleteOptions,
    KindIndex,
    ListOptions,
    ObjectList,
    PatchType,
    WatchEvent,
    WatchOptions,
)

__all__ = ["RestTransport", "resource_path"]

JSON = "application/json"


def resource_path(kind: Kind, namespace: str = "", name: str = "", subresource: str = "") -> str:
    """The REST path of a collection, an object, or an object's subresource."""
    base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    parts = [base]
    if kind.namespaced and namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(kind.plural)
    if name:
        parts.append(quote(name, safe=""))
        if subresource:
            parts.append(subresource)
    return "/".join(parts)


class RestTransport:
    """REST/JSON transport. ``http`` may be a preconfigured ``httpx.AsyncClient``
    (TLS, auth, or ``httpx.MockTransport`` in tests); otherwise one is made for
    ``base_url`` and closed by ``close()``."""

    def __init__(self, base_url: str = "", *, kinds: KindRegistry | None = None,
                 timeout: float = 30.0, headers: dict[str, str] | None = None,
                 verify: Any = True, http: httpx.AsyncClient | None = None) -> None:
        self.kinds = kinds or KindRegistry.builtin()
        self._index = KindIndex(self.kinds)
        self._owns_http = http is None
        self._timeout = timeout
        self._http = http or httpx.AsyncClient(
            base_url=base_url, timeout=timeout, headers=headers, verify=verify,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32))

    # -- plumbing ---------------------------------------------------------------

    async def _request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                       body: bytes | None = None, content_type: str = JSON) -> Any:
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            response = await self._http.request(method, path, params=params, content=body,
                                                headers=headers)
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"{method} {path}: {exc or type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise _error_from_response(response.status_code, response.content)
        try:
            return json.loads(response.content) if response.content else None
        except ValueError as exc:
            raise APIError(500, "InternalError",
                           f"{method} {path}: the server answered invalid JSON: {exc}") from None

    def _decode(self, kind: Kind, doc: Any) -> Message:
        try:
            return object_from_dict(kind, doc, strict=False)
        except (DecodeError, TypeError) as exc:
            raise APIError(500, "InternalError",
                           f"cannot decode {kind.kind} from the server: {exc}") from None

    def _encode(self, kind: Kind, obj: Message) -> bytes:
        return dumps(object_to_dict(kind, obj))

    # -- verbs ------------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str, name: str, *,
                  subresource: str = "") -> Message:
        doc = await self._request("GET", resource_path(kind, namespace, name, subresource))
        return self._decode(kind, doc)

    async def list(self, kind: Kind, namespace: str, options: ListOptions) -> ObjectList[Message]:
        params: dict[str, str] = {}
        if options.label_selector:
            params["labelSelector"] = options.label_selector
        if options.field_selector:
            params["fieldSelector"] = options.field_selector
        if options.limit:
            params["limit"] = str(options.limit)
        if options.continue_token:
            params["continue"] = options.continue_token
        if options.resource_version:
            params["resourceVersion"] = options.resource_version
        if options.resource_version_match:
            params["resourceVersionMatch"] = options.resource_version_match
        doc = await self._request("GET", resource_path(kind, namespace), params=params)
        if not isinstance(doc, dict):
            raise APIError(500, "InternalError", f"list of {kind.plural}: not an object")
        meta = doc.get("metadata") or {}
        items = [self._decode(kind, item) for item in doc.get("items") or []]
        remaining = meta.get("remainingItemCount")
        return ObjectList(items, str(meta.get("resourceVersion", "")),
                          str(meta.get("continue", "")),
                          remaining if isinstance(remaining, int) else None)

    async def create(self, kind: Kind, namespace: str, obj: Message, *, name: str = "",
                     subresource: str = "", dry_run: bool = False) -> Message | None:
        params = {"dryRun": "All"} if dry_run else None
        if subresource:
            if not name:
                raise ValueError("a subresource create needs the object's name")
            body_kind = self._index.for_object(obj)
            await self._request("POST", resource_path(kind, namespace, name, subresource),
                                params=params, body=self._encode(body_kind, obj))
            return None
        doc = await self._request("POST", resource_path(kind, namespace), params=params,
                                  body=self._encode(kind, obj))
        return self._decode(kind, doc)

    async def update(self, kind: Kind, namespace: str, name: str, obj: Message, *,
                     subresource: str = "", dry_run: bool = False) -> Message:
        params = {"dryRun": "All"} if dry_run else None
        doc = await self._request("PUT", resource_path(kind, namespace, name, subresource),
                                  params=params, body=self._encode(kind, obj))
        return self._decode(kind, doc)

    async def patch(self, kind: Kind, namespace: str, name: str, patch: bytes,
                    patch_type: PatchType, *, subresource: str = "",
                    dry_run: bool = False) -> Message:
        params = {"dryRun": "All"} if dry_run else None
        doc = await self._request("PATCH", resource_path(kind, namespace, name, subresource),
                                  params=params, body=patch,
                                  content_type=PATCH_CONTENT_TYPES[patch_type])
        return self._decode(kind, doc)

    async def delete(self, kind: Kind, namespace: str, name: str,
                     options: DeleteOptions) -> Message | None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if options.grace_period_seconds is not None:
            body["gracePeriodSeconds"] = options.grace_period_seconds
        if options.propagation_policy:
            body["propagationPolicy"] = options.propagation_policy
        preconditions = {}
        if options.precondition_uid:
            preconditions["uid"] = options.precondition_uid
        if options.precondition_resource_version:
            preconditions["resourceVersion"] = options.precondition_resource_version
        if preconditions:
            body["preconditions"] = preconditions
        if options.dry_run:
            body["dryRun"] = ["All"]
        doc = await self._request("DELETE", resource_path(kind, namespace, name),
                                  body=dumps(body))
        if isinstance(doc, dict) and doc.get("kind") == kind.kind:
            return self._decode(kind, doc)
        return None

    async def watch(self, kind: Kind, namespace: str,
                    options: WatchOptions) -> AsyncGenerator[WatchEvent[Message], None]:
        params: dict[str, str] = {"watch": "true"}
        if options.label_selector:
            params["labelSelector"] = options.label_selector
        if options.field_selector:
            params["fieldSelector"] = options.field_selector
        if options.resource_version:
            params["resourceVersion"] = options.resource_version
        if options.allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        read_timeout: float | None = None
        if options.timeout_seconds:
            params["timeoutSeconds"] = str(options.timeout_seconds)
            read_timeout = options.timeout_seconds + 30.0
        path = resource_path(kind, namespace)
        timeout = httpx.Timeout(self._timeout, read=read_timeout)
        try:
            async with self._http.stream("GET", path, params=params, timeout=timeout,
                                         headers={"Accept": JSON}) as response:
                if response.status_code >= 400:
                    raise _error_from_response(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    yield self._watch_event(kind, line)
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"watch {path}: {exc or type(exc).__name__}") from exc

    def _watch_event(self, kind: Kind, line: str) -> WatchEvent[Message]:
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise APIConnectionError(f"watch of {kind.plural}: invalid JSON line: {exc}") from None
        if not isinstance(event, dict):
            raise APIConnectionError(f"watch of {kind.plural}: event is not an object")
        etype = event.get("type")
        obj = event.get("object")
        if etype == "ERROR":
            raise APIError.from_status(obj, 500)
        if etype not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            raise APIConnectionError(f"watch of {kind.plural}: unknown event type {etype!r}")
        return WatchEvent(etype, self._decode(kind, obj))

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()


def _error_from_response(code: int, content: bytes) -> APIError:
    try:
        doc: Any = json.loads(content) if content else None
    except ValueError:
        doc = content.decode("utf-8", "replace")
    return APIError.from_status(doc, code)
