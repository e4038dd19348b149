"""The credential policy: margins that scale with the lifetime, clock skew, and the serve/lock/renew decisions."""

from __future__ import annotations

import pytest

from kubectl_teleport import policy

T0 = 1_800_000_000  # the local clock when the certificate arrives


def cert(lifetime: float, skew: float = 0.0) -> tuple[float, float]:
    """NotBefore/NotAfter of a certificate issued now by a server whose clock is `skew` behind ours."""
    server_now = T0 - skew
    return server_now - policy.BACKDATE, server_now + lifetime


@pytest.mark.parametrize("lifetime", [60, 90, 120, 600, 3600, 86400])
def test_every_lifetime_gives_a_cached_certificate(lifetime):
    t = policy.timing(*cert(lifetime), received_at=T0)
    assert T0 < t.renew_at < t.expires_at < t.not_after  # fresh for a while, due before kubectl must re-ask
    assert t.renew_at - T0 >= lifetime * 0.6  # cached for about two thirds of its life
    assert t.expires_at - T0 >= lifetime * 0.9 - 1


def test_one_minute_margins_are_scaled_not_fixed():
    t = policy.timing(*cert(60), received_at=T0)
    assert (t.renew_at - T0, t.not_after - t.expires_at) == (40, 6)
    hour = policy.timing(*cert(3600), received_at=T0)
    assert (hour.renew_at - T0, hour.not_after - hour.expires_at) == (2400, 60)  # one minute at most


@pytest.mark.parametrize("skew", [-600, -90, 0, 90, 600])  # positive: our clock is ahead of the server's
def test_clock_skew_is_mapped_onto_the_local_clock(skew):
    t = policy.timing(*cert(120, skew), received_at=T0)
    assert t.skew == pytest.approx(skew)
    assert T0 < t.renew_at < t.expires_at  # still cached, whichever way the clocks disagree
    assert t.expires_at - T0 == 108  # 2 min lifetime, 12 s margin, in local terms
    assert t.not_after == T0 + 120


def test_a_server_that_does_not_backdate_only_makes_us_more_careful():
    not_before, not_after = T0, T0 + 600  # no backdate: we think the server runs a minute ahead
    t = policy.timing(not_before, not_after, received_at=T0)
    assert t.expires_at <= not_after - 60


def test_identity_renew_at_is_two_thirds_into_its_life():
    nb, na = cert(3600)
    assert policy.renew_at(nb, na) == T0 + 2400


@pytest.mark.parametrize(("fresh", "valid", "writable", "locked", "step"), [
    (True, True, True, False, policy.SERVE),
    (True, True, False, False, policy.SERVE),
    (False, True, True, False, policy.TRY_LOCK),
    (False, False, True, False, policy.WAIT_LOCK),
    (False, True, False, False, policy.READER_SERVE),
    (False, False, False, False, policy.READER_FAIL),
    (False, True, True, True, policy.RENEW),
    (False, False, True, True, policy.RENEW),
    (True, True, True, True, policy.SERVE),
])
def test_decide(fresh, valid, writable, locked, step):
    assert policy.decide(fresh, valid, writable=writable, locked=locked) == step


def test_network_budget_is_short_only_while_a_valid_certificate_can_be_served():
    assert policy.network_budget(True, 15.0) == policy.DUE_BUDGET <= 2.0
    assert policy.network_budget(False, 15.0) == 15.0
    assert policy.network_budget(True, 0.5) == 0.5


def test_any_failure_serves_a_valid_certificate():
    assert policy.serve_after_failure(True) and not policy.serve_after_failure(False)
