"""No token, key or certificate body in any output or log: a full scenario (login, credentials, renewal,
status, kube ls, errors, logout) whose every byte of stdout/stderr, and the devcluster's log, is searched.
Only `credentials` stdout may (must) carry the certificate and key: that is what kubectl reads."""

from __future__ import annotations

import json

from kubectl_teleport import pki
from tests.e2e.test_bad_input import pem_bodies
from tests.plugin_helpers import KUBE_CLUSTER, ROLE, make_due, plugin, web_trust


def test_no_secret_in_any_output_or_log(devcluster, tmp_path):
    data = tmp_path / "bot"
    bot = devcluster.add_bot()
    other = devcluster.add_bot("second")
    outputs: list[tuple[str, str]] = []  # (what, text) that must stay clean
    secrets: set[str] = {bot["token"], other["token"]}
    served: list[str] = []

    def run(what: str, *args: str, env: dict | None = None, stdout_has_secrets: bool = False):
        out = plugin(*args, env={**web_trust(devcluster), **(env or {})})
        outputs.append((f"{what} stderr", out.stderr))
        if stdout_has_secrets:
            served.append(out.stdout)
        else:
            outputs.append((f"{what} stdout", out.stdout))
        return out

    login = ["--proxy", bot["teleport_proxy"], "--ca-pin", bot["ca_pins"][0], "--role", ROLE,
             "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(data)]
    assert run("login", "login", "--token", bot["token"], *login).returncode == 0
    secrets |= set(pem_bodies(data))
    cred = ["credentials", "--data-dir", str(data), "--kube-cluster", KUBE_CLUSTER]
    assert run("credentials (hit)", *cred, stdout_has_secrets=True).returncode == 0
    make_due(data)
    assert run("credentials (renewal)", *cred, stdout_has_secrets=True).returncode == 0
    secrets |= set(pem_bodies(data))
    for fmt in ("text", "json"):
        assert run(f"status {fmt}", "status", "--data-dir", str(data), "-o", fmt).returncode == 0
        assert run(f"kube ls {fmt}", "kube", "ls", "--data-dir", str(data), "-o", fmt).returncode == 0
    # errors: a used token, a wrong pin with a fresh token, an unknown cluster, an expired cache with no issuer
    assert run("login reused token", "login", "--token", bot["token"], *login).returncode != 0
    wrong_pin = ["--proxy", bot["teleport_proxy"], "--ca-pin", "sha256:" + "1" * 64, "--role", ROLE,
                 "--kube-cluster", KUBE_CLUSTER, "--data-dir", str(tmp_path / "other")]
    assert run("login wrong pin", "login", "--token", other["token"], *wrong_pin).returncode != 0
    assert run("login token in env", "login", *wrong_pin,
               env={"KUBECTL_TELEPORT_TOKEN": other["token"]}).returncode != 0
    assert run("unknown cluster", "credentials", "--data-dir", str(data), "--kube-cluster", "nope").returncode != 0
    assert run("bad exec info", *cred, env={"KUBERNETES_EXEC_INFO": "{bad"}).returncode != 0
    assert run("status", "status", "--data-dir", str(data)).returncode == 0
    secrets |= set(pem_bodies(data))
    assert run("logout", "logout", "--data-dir", str(data)).returncode == 0
    devcluster.stop()
    log = devcluster.log()
    assert "host/credentials" in log or "join" in log  # the log is real and has requests in it
    outputs.append(("devcluster log", log))

    assert len(secrets) > 10
    for what, text in outputs:
        for secret in secrets:
            assert secret not in text, f"a token or PEM body appeared in {what}"
        assert "BEGIN PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text, what
    # and credentials stdout does carry a matching certificate and key for kubectl
    for text in served:
        status = json.loads(text)["status"]
        assert pki.public_keys_equal(pki.load_cert(status["clientCertificateData"]).public_key(),
                                     pki.load_private_key(status["clientKeyData"]).public_key())
