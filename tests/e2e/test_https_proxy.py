"""Behind an HTTP proxy: $HTTPS_PROXY is honoured (CONNECT tunnel, TLS still verified against the pinned CA)
and $NO_PROXY is respected."""

from __future__ import annotations

import socket
import threading
from collections import Counter

import pytest

from kubectl_teleport import errors
from tests.plugin_helpers import cert_of, credentials, join_args, login, make_due, plugin, web_trust


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records the targets it tunnels to."""

    def __init__(self) -> None:
        self.targets: Counter[str] = Counter()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = client.recv(1024)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.targets[target] += 1
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pump = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
                pump.start()
                self._pump(client, upstream)
                pump.join(10)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def http_proxy():
    proxy = ConnectProxy()
    yield proxy
    proxy.close()


def test_login_and_renewal_go_through_https_proxy(devcluster, http_proxy, tmp_path):
    env = {"HTTPS_PROXY": http_proxy.url, "NO_PROXY": ""}
    bot = devcluster.add_bot()
    data = tmp_path / "bot"
    out = plugin("login", *join_args(bot), "--kube-cluster", "example-k8s-cluster", "--data-dir", str(data),
                 env={**env, **web_trust(devcluster)})
    assert out.returncode == 0, out.stderr
    tunnels = http_proxy.targets[devcluster.teleport_proxy]
    assert tunnels >= 3  # the web API (discovery and join), the unverified CA fetch, the first kube certificate
    first = cert_of(credentials(data).stdout)
    make_due(data)
    renewed = plugin("credentials", "--data-dir", str(data), "--kube-cluster", "example-k8s-cluster",
                     env={**env, "KUBERNETES_EXEC_INFO": ""})
    assert renewed.returncode == 0, renewed.stderr
    assert cert_of(renewed.stdout) != first
    assert http_proxy.targets[devcluster.teleport_proxy] == tunnels + 1  # one gRPC call, tunnelled


def test_no_proxy_bypasses_the_proxy(devcluster, http_proxy, tmp_path):
    login(devcluster, tmp_path / "bot")  # plain
    make_due(tmp_path / "bot")
    out = plugin("credentials", "--data-dir", str(tmp_path / "bot"), "--kube-cluster", "example-k8s-cluster",
                 env={"HTTPS_PROXY": http_proxy.url, "NO_PROXY": "127.0.0.1,localhost"})
    assert out.returncode == 0, out.stderr
    assert not http_proxy.targets


def test_unreachable_proxy_is_one_clear_line(devcluster, tmp_path):
    login(devcluster, tmp_path / "bot")
    make_due(tmp_path / "bot", expired=True)
    out = plugin("credentials", "--data-dir", str(tmp_path / "bot"), "--kube-cluster", "example-k8s-cluster",
                 "--timeout", "3", env={"HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""})
    assert out.returncode == errors.UNAVAILABLE
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
