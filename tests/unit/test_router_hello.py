"""The router's ClientHello parser and routing table, on real ClientHellos made by the stdlib's OpenSSL.

Hellos come from `ssl.MemoryBIO` handshakes; the record layer and the extension block are rebuilt by hand (with
code independent of the parser's) to split the hello across records and to add GREASE and padding.
"""

from __future__ import annotations

import ssl
import struct

import pytest

from kubectl_teleport.devcluster.router import (
    DEFAULT_ROUTES,
    MAX_HELLO_BYTES,
    ClientHello,
    HelloReader,
    HelloTooLarge,
    NoRoute,
    NotClientHello,
    Rule,
    choose_route,
    parse_client_hello,
)

AUTH_ALPN = f"teleport-auth@{b'devcluster'.hex()}.teleport.cluster.local"
KUBE_SNI = "kube-teleport-proxy-alpn.example.com"
EXT_ALPN, EXT_PADDING, EXT_SUPPORTED_VERSIONS = 16, 21, 43


def make_hello(server_hostname: str | None = None, alpn: list[str] | None = None,
               minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None) -> bytes:
    """The bytes of the first flight (the ClientHello records) of a real stdlib TLS client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def unrecord(data: bytes) -> bytes:
    """The handshake message carried by a sequence of TLS records."""
    message, pos = b"", 0
    while pos < len(data):
        ctype, _, length = struct.unpack("!BHH", data[pos:pos + 5])
        assert ctype == 22
        message += data[pos + 5:pos + 5 + length]
        pos += 5 + length
    return message


def records(message: bytes, sizes: list[int] | None = None, version: int = 0x0301) -> bytes:
    """`message` re-framed as handshake records: fragments of the given sizes, the rest in 16 KiB records."""
    out, pos = b"", 0
    for size in [*(sizes or []), *[1 << 14] * (len(message) // (1 << 14) + 1)]:
        fragment = message[pos:pos + size]
        if not fragment:
            break
        out += struct.pack("!BHH", 22, version, len(fragment)) + fragment
        pos += len(fragment)
    return out


def split_extensions(message: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """(the ClientHello body up to its extensions, [(type, data)]) for a ClientHello handshake message."""
    body = message[4:]
    pos = 34
    pos += 1 + body[pos]  # session id
    pos += 2 + int.from_bytes(body[pos:pos + 2], "big")  # cipher suites
    pos += 1 + body[pos]  # compression methods
    head, ext_block = body[:pos], body[pos + 2:]
    exts, i = [], 0
    while i < len(ext_block):
        ext_type, length = struct.unpack("!HH", ext_block[i:i + 4])
        exts.append((ext_type, ext_block[i + 4:i + 4 + length]))
        i += 4 + length
    return head, exts


def join_extensions(head: bytes, exts: list[tuple[int, bytes]] | None) -> bytes:
    """A ClientHello handshake message from a body head and extensions (None: no extension block at all)."""
    body = head
    if exts is not None:
        block = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in exts)
        body += struct.pack("!H", len(block)) + block
    return b"\x01" + len(body).to_bytes(3, "big") + body


def alpn_ext(*names: bytes) -> bytes:
    names_block = b"".join(bytes([len(n)]) + n for n in names)
    return struct.pack("!H", len(names_block)) + names_block


def sni_ext(name: bytes) -> bytes:
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    return struct.pack("!H", len(entry)) + entry


# --- real hellos -------------------------------------------------------------------------------------------


def test_sni_and_alpn() -> None:
    hello = parse_client_hello(make_hello(KUBE_SNI, [AUTH_ALPN, "h2", "http/1.1"]))
    assert hello == ClientHello(sni=KUBE_SNI, alpn=[AUTH_ALPN, "h2", "http/1.1"])


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_ip_address_sends_no_sni(address: str) -> None:
    assert parse_client_hello(make_hello(address, ["h2"])) == ClientHello(sni=None, alpn=["h2"])


def test_no_alpn() -> None:
    assert parse_client_hello(make_hello("example.com")) == ClientHello(sni="example.com", alpn=[])


@pytest.mark.parametrize(("minimum", "maximum", "has_supported_versions"), [
    (None, ssl.TLSVersion.TLSv1_2, False),
    (ssl.TLSVersion.TLSv1_3, None, True),
], ids=["tls1.2-only", "tls1.3-only"])
def test_tls12_and_tls13_hellos(minimum: ssl.TLSVersion | None, maximum: ssl.TLSVersion | None,
                                has_supported_versions: bool) -> None:
    data = make_hello("auth.example.com", [AUTH_ALPN, "h2"], minimum, maximum)
    _, exts = split_extensions(unrecord(data))
    assert (EXT_SUPPORTED_VERSIONS in {t for t, _ in exts}) is has_supported_versions  # really different hellos
    assert parse_client_hello(data) == ClientHello(sni="auth.example.com", alpn=[AUTH_ALPN, "h2"])


def test_one_byte_reads() -> None:
    data = make_hello(KUBE_SNI, ["h2"])
    reader = HelloReader()
    results = [reader.feed(data[i:i + 1]) for i in range(len(data))]
    assert results[:-1] == [None] * (len(data) - 1)
    assert results[-1] == ClientHello(sni=KUBE_SNI, alpn=["h2"])
    assert all(parse_client_hello(data[:n]) is None for n in range(len(data)))  # every prefix: "need more"


@pytest.mark.parametrize("sizes", [[200], [1], [2], [3, 1], [4], [1, 1, 1, 1, 1]],
                         ids=["two-records", "split-in-type", "split-in-length", "3+1", "header-alone", "tiny"])
def test_hello_split_across_records(sizes: list[int]) -> None:
    message = unrecord(make_hello(KUBE_SNI, [AUTH_ALPN]))
    data = records(message, sizes)
    assert data.count(b"\x16\x03\x01") >= len(sizes) + 1
    assert parse_client_hello(data) == ClientHello(sni=KUBE_SNI, alpn=[AUTH_ALPN])
    reader = HelloReader()  # and across TCP reads that cut through record headers
    assert [reader.feed(data[i:i + 3]) for i in range(0, len(data), 3)][-1] == ClientHello(KUBE_SNI, [AUTH_ALPN])


def test_hello_larger_than_one_record() -> None:
    """A 20 KB hello (think post-quantum key shares) spans two full records."""
    head, exts = split_extensions(unrecord(make_hello(KUBE_SNI, ["h2"])))
    exts = [(t, d) for t, d in exts if t != EXT_PADDING] + [(EXT_PADDING, bytes(20_000))]
    data = records(join_extensions(head, exts))
    assert len(data) > 20_000 and data.count(b"\x16\x03\x01") >= 2
    assert parse_client_hello(data) == ClientHello(sni=KUBE_SNI, alpn=["h2"])


def test_bytes_after_the_hello_are_ignored() -> None:
    data = make_hello(KUBE_SNI, ["h2"])
    early = b"\x17\x03\x03\x00\x05hello"  # application data following the first flight
    assert parse_client_hello(data + early) == ClientHello(sni=KUBE_SNI, alpn=["h2"])


def test_grease_extensions_and_alpn_values_are_skipped() -> None:
    head, exts = split_extensions(unrecord(make_hello(KUBE_SNI)))
    exts = [(0x0A0A, b""), *exts, (EXT_ALPN, alpn_ext(b"\x1a\x1a", b"h2", b"\xfa\xfa", AUTH_ALPN.encode())),
            (0xFAFA, b"\x00")]
    assert parse_client_hello(records(join_extensions(head, exts))) == ClientHello(KUBE_SNI, ["h2", AUTH_ALPN])


def test_absent_extension_block() -> None:
    head, _ = split_extensions(unrecord(make_hello(KUBE_SNI)))
    assert parse_client_hello(records(join_extensions(head, None))) == ClientHello(sni=None, alpn=[])
    assert parse_client_hello(records(join_extensions(head, []))) == ClientHello(sni=None, alpn=[])


def test_sni_list_without_a_host_name() -> None:
    head, exts = split_extensions(unrecord(make_hello(KUBE_SNI)))
    other_type = struct.pack("!H", 4) + b"\x01\x00\x01x"  # a name of type 1, not host_name
    exts = [(t, other_type if t == 0 else d) for t, d in exts]
    assert parse_client_hello(records(join_extensions(head, exts))) == ClientHello(sni=None, alpn=[])


# --- rejected input ------------------------------------------------------------------------------------------


def malformed(change: str) -> bytes:
    """A real hello with one defect."""
    message = unrecord(make_hello(KUBE_SNI, ["h2"]))
    head, exts = split_extensions(message)
    if change == "duplicate-extension":
        return records(join_extensions(head, [*exts, (EXT_ALPN, alpn_ext(b"http/1.1"))]))
    if change == "empty-alpn-name":
        return records(join_extensions(head, [(t, alpn_ext(b"h2", b"") if t == EXT_ALPN else d) for t, d in exts]))
    if change == "non-ascii-sni":
        return records(join_extensions(head, [(t, sni_ext("bücher.example".encode()) if t == 0 else d)
                                              for t, d in exts]))
    if change == "extension-overruns":
        bad = [(t, d) for t, d in exts]
        block = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in bad)[:-1]  # last extension one byte short
        body = head + struct.pack("!H", len(block) + 1) + block
        return records(b"\x01" + len(body).to_bytes(3, "big") + body)
    if change == "trailing-bytes":
        body = message[4:] + b"\x00"
        return records(b"\x01" + len(body).to_bytes(3, "big") + body)
    if change == "session-id-overruns":
        body = message[4:38] + b"\xff" + message[39:]
        return records(b"\x01" + len(body).to_bytes(3, "big") + body)
    raise AssertionError(change)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"\x80\x2e\x01\x00\x02",  # SSLv2-compatible hello
    b"\x15\x03\x03\x00\x02\x02\x28",  # an alert record
    b"\x17\x03\x03\x00\x01\x00",  # application data first
    b"\x16\x02\x00\x00\x01\x01",  # not version 3.x
    b"\x16\x03\x01\x00\x00",  # empty handshake record
    b"\x16\x03\x01\x40\x01",  # record longer than 2^14
    b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",  # a ServerHello
    b"\x16\x03\x01\x00\x06\x01\x00\x00\x02\x03\x03",  # a ClientHello cut short inside its body
], ids=["http", "ssh", "sslv2", "alert", "appdata", "version", "empty-record", "long-record", "server-hello",
        "truncated-body"])
def test_not_a_client_hello(data: bytes) -> None:
    with pytest.raises(NotClientHello) as caught:
        parse_client_hello(data)
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, HelloTooLarge)


@pytest.mark.parametrize("change", ["duplicate-extension", "empty-alpn-name", "non-ascii-sni", "extension-overruns",
                                    "trailing-bytes", "session-id-overruns"])
def test_malformed_client_hello(change: str) -> None:
    with pytest.raises(NotClientHello):
        parse_client_hello(malformed(change))


def test_garbage_is_rejected_at_its_first_byte() -> None:
    with pytest.raises(NotClientHello):
        HelloReader().feed(b"G")


def test_alert_after_a_first_record_is_rejected() -> None:
    data = records(unrecord(make_hello(KUBE_SNI)), [100])
    first_record = data[:105]
    assert parse_client_hello(first_record) is None
    with pytest.raises(NotClientHello):
        parse_client_hello(first_record + b"\x15\x03\x03\x00\x02\x02\x28")


def test_oversized_declared_length_is_rejected_from_its_header() -> None:
    """A handshake header announcing 1 MiB is refused on sight, before any of the body arrives."""
    header = b"\x16\x03\x01\x40\x00" + b"\x01" + (1 << 20).to_bytes(3, "big")
    with pytest.raises(HelloTooLarge):
        parse_client_hello(header)
    assert issubclass(HelloTooLarge, NotClientHello)


def test_hello_over_the_buffer_limit() -> None:
    data = make_hello(KUBE_SNI, ["h2"])
    assert parse_client_hello(data, max_size=len(data)) is not None
    with pytest.raises(HelloTooLarge):
        parse_client_hello(data, max_size=len(data) - 1)
    head, exts = split_extensions(unrecord(data))
    near_limit = records(join_extensions(head, [*exts, (0x7777, bytes(30_000)), (0x7778, bytes(30_000))]))
    assert MAX_HELLO_BYTES - 5_000 < len(near_limit) < MAX_HELLO_BYTES
    assert parse_client_hello(near_limit) == ClientHello(KUBE_SNI, ["h2"])
    over_limit = b"\x01" + (MAX_HELLO_BYTES - 8).to_bytes(3, "big") + unrecord(data)[4:]
    with pytest.raises(HelloTooLarge):
        parse_client_hello(records(over_limit))


def test_record_overhead_counts_against_the_limit() -> None:
    """One-byte records make a 517-byte hello cost ~3 KB of input: the limit bounds what is buffered."""
    message = unrecord(make_hello(KUBE_SNI, ["h2"]))
    tiny = records(message, [1] * len(message))
    assert parse_client_hello(tiny, max_size=len(tiny)) == ClientHello(KUBE_SNI, ["h2"])
    reader = HelloReader(max_size=2 * len(message))
    with pytest.raises(HelloTooLarge):
        for i in range(0, len(tiny), 7):
            reader.feed(tiny[i:i + 7])


# --- routing table -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sni", "alpn", "route"), [
    (None, [AUTH_ALPN, "h2"], "auth"),
    (f"{b'devcluster'.hex()}.teleport.cluster.local", [AUTH_ALPN, "h2"], "auth"),
    ("teleport.cluster.local", ["h2", AUTH_ALPN], "auth"),  # any offered protocol, not only the first
    (KUBE_SNI, [], "kube"),
    (KUBE_SNI, ["h2", "http/1.1"], "kube"),
    (KUBE_SNI.upper(), ["h2"], "kube"),  # DNS names are case-insensitive
    (KUBE_SNI, [AUTH_ALPN], "kube"),  # kube SNI is checked first, as in Teleport's proxy
    ("example.com", ["h2", "http/1.1"], "web"),
    (None, [], "web"),
    ("example.com", ["teleport-auth"], "web"),
    ("example.com", ["TELEPORT-AUTH@6162"], "web"),  # ALPN names are exact bytes
    ("teleport-auth@6162.teleport.cluster.local", [], "web"),  # the auth rule looks at ALPN, not SNI
    ("kube.example.com", ["h2"], "web"),
    ("example.com", ["kube-teleport-proxy-alpn.example.com"], "web"),  # the kube rule looks at SNI, not ALPN
    ("x.kube-teleport-proxy-alpn.example.com", [], "web"),
], ids=lambda v: repr(v))
def test_default_routes(sni: str | None, alpn: list[str], route: str) -> None:
    assert choose_route(ClientHello(sni, alpn)) == route
    assert choose_route(ClientHello(sni, alpn), DEFAULT_ROUTES) == route


def test_custom_table_first_match_wins_and_conditions_combine() -> None:
    table = [Rule("ssh", sni_prefix="ssh.", alpn_prefix="teleport-proxy-ssh"), Rule("tunnel", alpn_prefix="teleport-"),
             Rule("web")]
    assert choose_route(ClientHello("ssh.example.com", ["teleport-proxy-ssh"]), table) == "ssh"
    assert choose_route(ClientHello("other.example.com", ["teleport-proxy-ssh"]), table) == "tunnel"
    assert choose_route(ClientHello("ssh.example.com", ["h2"]), table) == "web"


def test_table_without_catch_all() -> None:
    with pytest.raises(NoRoute):
        choose_route(ClientHello("example.com", ["h2"]), [Rule("auth", alpn_prefix="teleport-auth@")])
    with pytest.raises(NoRoute):
        choose_route(ClientHello(None, []), [])
