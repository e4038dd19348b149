"""The README's main job: `kubectl-teleport demo`, with the real kubectl and without any kubectl."""

from __future__ import annotations

import os

from tests.plugin_helpers import plugin


def test_demo_with_real_kubectl(kubectl, tmp_path):
    out = plugin("demo", "--kubectl", str(kubectl), env={"TMPDIR": str(tmp_path), "HOME": str(tmp_path)},
                 timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "$ kubectl get pods -n demo" in out.stdout
    assert "web-" in out.stdout and "Running" in out.stdout
    assert "alice" in out.stdout and "example" in out.stdout
    assert "kubectl gets: cached" in out.stdout  # the status step
    assert "-----BEGIN" not in out.stdout + out.stderr
    assert list(tmp_path.glob("kubectl-teleport-demo-*")) == []  # cleaned up


def test_demo_without_kubectl_makes_the_calls_itself(tmp_path):
    out = plugin("demo", env={"PATH": str(tmp_path / "empty"), "TMPDIR": str(tmp_path)}, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert '"kind": "ExecCredential"' in out.stdout and "<PEM private key, redacted>" in out.stdout
    assert "SelfSubjectReview: user alice, groups example" in out.stdout
    assert "toolbox" in out.stdout
    assert "-----BEGIN" not in out.stdout + out.stderr
    assert os.listdir(tmp_path) in ([], ["empty"])
