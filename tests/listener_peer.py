#!/usr/bin/env python3
"""The Python end of tests/listener_test.cpp: a Listener or Client speaking Python's authkey handshake.

Usage: listener_peer.py ROLE FAMILY HOST PORT KEY PROTOCOL [DIGEST [AFTER]]
  ROLE      listen   accept one client, print "READY <port>" on stdout once listening (port 0: the one picked)
            connect  connect to the C++ Listener at the address
  FAMILY    unix (HOST is a path), abstract (HOST is the name after the NUL), tcp4, tcp6 (HOST numeric)
  KEY       the authkey as hex, "-" for none (authkey=None), "empty" for b""
  PROTOCOL  python  the handshake of this machine's multiprocessing (CPython 3.11: bare HMAC-MD5): its
                    Listener/Client for unix, abstract and tcp4; for tcp6, which Python's Listener/Client do
                    not accept, a socket of our own handed to multiprocessing.connection's deliver_challenge /
                    answer_challenge in the order its Listener/Client call them
            3.12    the handshake as CPython 3.12's multiprocessing/connection.py runs it (written out below:
                    "{DIGEST}" + 40 random bytes as the challenge, a "{digest}"-prefixed or a bare legacy
                    HMAC-MD5 response accepted, the prefix of a challenge picking the response's digest)
  DIGEST    for 3.12: the digest our challenge asks for (default sha256)
  AFTER     what follows the handshake:
            echo     (default) receive messages and send each back as b"py:" + message until end of stream;
                     exit 0
            objects  pickled objects both ways: conn.send() each of OBJECTS (Python's own pickling), then for
                     each conn.recv() must equal ("cpp", that object); then conn.recv() must equal CPP_OBJECT,
                     which the C++ side built itself; exit 0, or 5 naming the first mismatch on stderr
Handshake refused: print the exception's class and message on stderr, exit 3. Standard library only.
"""
import hmac
import os
import socket
import sys
from multiprocessing import AuthenticationError
from multiprocessing import connection as mpc

CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"
LEGACY_LENGTHS = (20, 16)
ALLOWED = (b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384")


def split_digest(message):
    """3.12: legacy (no name) for 16 or 20 bytes, else a {name} prefix with an allowed name."""
    if len(message) in LEGACY_LENGTHS:
        return "", message
    if message.startswith(b"{"):
        curly = message.find(b"}", 1, 8 + 2)
        if curly > 0 and message[1:curly] in ALLOWED:
            return message[1:curly].decode("ascii"), message[curly + 1:]
    raise AuthenticationError("unsupported message length, missing digest prefix, or unsupported digest")


def deliver_312(conn, key, digest):
    message = b"{" + digest.encode("ascii") + b"}" + os.urandom(40)
    conn.send_bytes(CHALLENGE + message)
    response = conn.recv_bytes(256)
    try:
        name, mac = split_digest(response)
        expected = hmac.new(key, message, name or "md5").digest()
        if len(expected) != len(mac) or not hmac.compare_digest(expected, mac):
            raise AuthenticationError("digest received was wrong")
    except AuthenticationError:
        conn.send_bytes(FAILURE)
        raise
    conn.send_bytes(WELCOME)


def answer_312(conn, key):
    message = conn.recv_bytes(256)
    if not message.startswith(CHALLENGE):
        raise AuthenticationError("Protocol error, expected challenge")
    message = message[len(CHALLENGE):]
    if len(message) < 20:
        raise AuthenticationError("challenge too short")
    name, _ = split_digest(message)
    if not name:
        response = hmac.new(key, message, "md5").digest()
    else:
        response = b"{" + name.encode("ascii") + b"}" + hmac.new(key, message, name).digest()
    conn.send_bytes(response)
    if conn.recv_bytes(256) != WELCOME:
        raise AuthenticationError("digest sent was rejected")


def address_of(family, host, port):
    if family == "unix":
        return host
    if family == "abstract":
        return "\0" + host
    return (host, port)


def raw_socket(family):
    kinds = {"unix": socket.AF_UNIX, "abstract": socket.AF_UNIX, "tcp4": socket.AF_INET, "tcp6": socket.AF_INET6}
    return socket.socket(kinds[family], socket.SOCK_STREAM)


# What listener_test.cpp's objects exchange sends and expects (kept in step with pickled_objects() there).
OBJECTS = [
    "h\u00e9llo \u2603",
    0,
    -7,
    2**40 + 3,
    -(2**70),
    3.25,
    -0.0,
    None,
    True,
    [1, "two", 3.0, None, [b"four"]],
    {"a": 1, "b": [2, 3], 7: "seven", None: (1, 2)},
    b"\x00\xffbytes",
    (),
    (1, ("nested", 2.5), b""),
    bytearray(b"ba"),
    {1, 2, 3},
]
CPP_OBJECT = {"from": "c++", "ints": [1, -2, 2**63 - 1], "pi": 3.5, "none": None, "raw": b"\x01\x02",
              "pair": ("x", True)}


def exchange_objects(conn):
    for obj in OBJECTS:
        conn.send(obj)
    for obj in OBJECTS:
        got = conn.recv()
        if got != ("cpp", obj) or type(got[1]) is not type(obj):
            sys.stderr.write("C++ answered %r for %r\n" % (got, obj))
            return 5
    got = conn.recv()
    if got != CPP_OBJECT:
        sys.stderr.write("C++ built %r, expected %r\n" % (got, CPP_OBJECT))
        return 5
    return 0


def echo(conn):
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return 0
        conn.send_bytes(b"py:" + message)


def main():
    role, family, host, port, key_text, protocol = sys.argv[1:7]
    digest = sys.argv[7] if len(sys.argv) > 7 else "sha256"
    after = sys.argv[8] if len(sys.argv) > 8 else "echo"
    port = int(port)
    key = None if key_text == "-" else b"" if key_text == "empty" else bytes.fromhex(key_text)
    address = address_of(family, host, port)
    real = protocol == "python" and family != "tcp6"
    try:
        if role == "listen":
            if real:
                listener = mpc.Listener(address, family="AF_INET" if family == "tcp4" else "AF_UNIX", authkey=key)
                bound = listener.address
                print("READY %d" % (bound[1] if isinstance(bound, tuple) else 0), flush=True)
                conn = listener.accept()
            else:
                server = raw_socket(family)
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind(address)
                server.listen(1)
                bound = server.getsockname()
                print("READY %d" % (bound[1] if isinstance(bound, tuple) else 0), flush=True)
                client, _ = server.accept()
                conn = mpc.Connection(client.detach())
                if key:
                    (mpc.deliver_challenge if protocol == "python" else lambda c, k: deliver_312(c, k, digest))(conn, key)
                    (mpc.answer_challenge if protocol == "python" else answer_312)(conn, key)
        else:
            if real:
                conn = mpc.Client(address, family="AF_INET" if family == "tcp4" else "AF_UNIX", authkey=key)
            else:
                sock = raw_socket(family)
                sock.connect(address)
                conn = mpc.Connection(sock.detach())
                if key is not None:
                    (mpc.answer_challenge if protocol == "python" else answer_312)(conn, key)
                    (mpc.deliver_challenge if protocol == "python" else lambda c, k: deliver_312(c, k, digest))(conn, key)
    except (AuthenticationError, EOFError, ConnectionError, AssertionError, OSError) as error:
        sys.stderr.write("%s: %s\n" % (type(error).__name__, error))
        return 3
    try:
        return exchange_objects(conn) if after == "objects" else echo(conn)
    except (ConnectionError, OSError, EOFError) as error:
        sys.stderr.write("%s: %s\n" % (type(error).__name__, error))
        return 4


if __name__ == "__main__":
    sys.exit(main())
