"""The kubelet's /exec, /attach, /portForward requests: parsing and refusals."""

from __future__ import annotations

import pytest

from pilothouse.services.kubelet.streaming import (
    V4,
    V5,
    StreamError,
    StreamRequest,
    parse_request,
    upstream_offer,
    v5_to_v4,
    websocket_url,
)


@pytest.mark.parametrize("path,query,expected", [
    ("/exec/ns/p/c", [("command", "sh"), ("command", "-c"), ("command", "a b"),
                      ("input", "1"), ("output", "1"), ("tty", "1")],
     StreamRequest("exec", "ns", "p", container="c", command=["sh", "-c", "a b"], stdin=True,
                   stdout=True, tty=True)),
    ("/exec/ns/p/uid-1/c", [("command", "ls"), ("stdout", "true"), ("stderr", "true")],
     StreamRequest("exec", "ns", "p", uid="uid-1", container="c", command=["ls"],
                   stdout=True, stderr=True)),
    ("/attach/ns/p/c", [("output", "1")],
     StreamRequest("attach", "ns", "p", container="c", stdout=True)),
    ("/portForward/ns/p", [("port", "80"), ("port", "443,8080")],
     StreamRequest("portForward", "ns", "p", ports=[80, 443, 8080])),
    ("/portForward/ns/p/uid-1", [],
     StreamRequest("portForward", "ns", "p", uid="uid-1")),
], ids=["exec", "exec-with-uid", "attach", "port-forward", "port-forward-spdy"])
def test_parse(path: str, query: list[tuple[str, str]], expected: StreamRequest) -> None:
    assert parse_request(path, query) == expected


@pytest.mark.parametrize("path,query,status,words", [
    ("/exec/ns/p/c", [("output", "1")], 400, "at least one command"),
    ("/exec/ns/p/c", [("command", "ls")], 400, "at least 1 of stdin, stdout, stderr"),
    ("/exec/ns/p/c", [("command", "ls"), ("output", "yes")], 400, "expected 1 or 0"),
    ("/exec/ns/p", [("command", "ls"), ("output", "1")], 400, "expected /exec/"),
    ("/portForward/ns", [], 400, "expected /portForward/"),
    ("/portForward/ns/p", [("port", "http")], 400, "invalid port"),
    ("/portForward/ns/p", [("port", "0")], 400, "invalid port"),
    ("/portForward/ns/p", [("port", "")], 400, "cannot be empty"),
    ("/shell/ns/p", [], 404, "not found"),
])
def test_refusals(path: str, query: list[tuple[str, str]], status: int, words: str) -> None:
    with pytest.raises(StreamError) as caught:
        parse_request(path, query)
    assert caught.value.status == status
    assert words in caught.value.message


def test_websocket_url() -> None:
    assert websocket_url("http://127.0.0.1:4000/exec/tok") == "ws://127.0.0.1:4000/exec/tok"
    assert websocket_url("https://h:1/x") == "wss://h:1/x"
    with pytest.raises(StreamError):
        websocket_url("/relative/only")


def test_a_lone_v5_offer_gets_v4_behind_it() -> None:
    assert upstream_offer([V5]) == [V5, V4]
    assert upstream_offer([V5, V4]) == [V5, V4]
    assert upstream_offer(["SPDY/3.1+portforward.k8s.io"]) == ["SPDY/3.1+portforward.k8s.io"]
    assert upstream_offer([]) == []


def test_v5_messages_for_a_v4_runtime() -> None:
    terminal, pipes = v5_to_v4(tty=True), v5_to_v4(tty=False)
    assert terminal(b"\x00ls\n") == b"\x00ls\n"
    assert terminal(b'\x04{"Width":80,"Height":24}') == b'\x04{"Width":80,"Height":24}'
    assert terminal(b"\xff\x00") == b"\x00\x04"  # stdin closed: ^D at a terminal
    assert pipes(b"\xff\x00") is None  # v4 cannot say it: dropped
    assert terminal(b"\xff\x01") is None
    assert terminal("0aGVsbG8=") == "0aGVsbG8="
