"""Clock skew is named as clock skew: a client clock behind the cluster's sees the cluster's certificates as not
valid yet, and the plugin says so with the offset (read from the server's Date header), not "wrong CA"."""

from __future__ import annotations

import re

from kubectl_teleport import errors
from tests.plugin_helpers import KUBE_CLUSTER, join_args, plugin, web_trust


def _login(dc, data) -> object:
    bot = dc.add_bot()
    return plugin("login", *join_args(bot), "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data),
                  env=web_trust(dc))


def test_client_clock_ten_minutes_behind_is_reported_as_clock_skew(devcluster_factory, tmp_path):
    dc = devcluster_factory("--clock-offset=10m")  # the cluster's clock runs 10 minutes ahead of ours
    out = _login(dc, tmp_path / "bot")
    assert out.returncode == errors.TRUST, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "clock" in lines[0] and "behind" in lines[0] and "does not chain" not in lines[0]
    offset = re.search(r"clock is (\d+)m(\d+)s behind", lines[0])
    assert offset and 9 * 60 <= int(offset[1]) * 60 + int(offset[2]) <= 11 * 60, lines[0]
    assert dc.stats()["joins"] == 0  # the token was never sent


def test_a_small_offset_is_not_an_error(devcluster_factory, tmp_path):
    dc = devcluster_factory("--clock-offset=20s")  # within the minute the cluster backdates its certificates
    out = _login(dc, tmp_path / "bot")
    assert out.returncode == 0, out.stderr


def test_client_clock_ahead_still_gets_a_cached_certificate(devcluster_factory, tmp_path):
    dc = devcluster_factory("--clock-offset=-5m")  # our clock 5 minutes ahead of the cluster's
    data = tmp_path / "bot"
    assert _login(dc, data).returncode == 0
    before = dc.stats()["kube_certs_issued"]
    first = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER)
    second = plugin("credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER)
    assert first.returncode == second.returncode == 0 and first.stdout == second.stdout
    assert dc.stats()["kube_certs_issued"] == before  # a cache hit, not a renewal per call
