"""`edgekd deploy` against a real ssh server: sshd started by this test on a free port of 127.0.0.1
with a throwaway host key and an authorized key made in a temporary folder. The "Pi" is this machine,
so the remote bench runs with --force and the project's Python (--remote-python) instead of a
freshly installed venv."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekd.bundle import verify_bundle
from edgekd.cli import main
from edgekd.deploy import DeployError, deploy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ipv6_free(port: int) -> bool:
    """Whether this machine has IPv6 loopback and ``port`` is free on it (some containers have none)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", port))
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    exe = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if exe is None or shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
        pytest.skip("sshd/ssh are not installed (apt-get install openssh-server openssh-client; .ci/run does)")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755)  # sshd's privilege-separation folder (a package postinst makes it)
    root = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True)
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    port, user = _free_port(), getpass.getuser()
    ipv6 = _ipv6_free(port)
    listen = "ListenAddress 127.0.0.1\n" + ("ListenAddress [::1]\n" if ipv6 else "")
    (root / "sshd_config").write_text(
        f"Port {port}\n{listen}HostKey {root}/host_key\nAuthorizedKeysFile {root}/authorized_keys\n"
        f"PidFile {root}/sshd.pid\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication "
        "no\n"
        f"PermitRootLogin prohibit-password\nAllowUsers {user}\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    proc = subprocess.Popen([exe, "-D", "-e", "-f", str(root / "sshd_config")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            pytest.fail(f"sshd did not start: {proc.stderr.read().strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("sshd did not listen within 15 s")
            time.sleep(0.1)
    options = [f"UserKnownHostsFile={root}/known_hosts", "StrictHostKeyChecking=accept-new"]
    yield {
        "host": f"{user}@127.0.0.1",
        "host6": f"{user}@::1" if ipv6 else None,
        "port": port,
        "identity": str(root / "client_key"),
        "ssh_option": options,
    }
    proc.terminate()
    proc.wait(timeout=10)


def _cli_ssh(sshd: dict) -> list[str]:
    args = ["--host", sshd["host"], "--port", str(sshd["port"]), "--identity", sshd["identity"]]
    for opt in sshd["ssh_option"]:
        args += ["--ssh-option", opt]
    return args


def test_deploy_bench_round_trip(sshd: dict, tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    remote = tmp_path / "remote"
    back = tmp_path / "back"
    args = [
        "deploy",
        *_cli_ssh(sshd),
        "--artifacts",
        str(tiny_bundle),
        "--bench",
        "--force",
        "--remote-dir",
        str(remote),
        "--remote-python",
        sys.executable,
        "--threads",
        "1",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--out",
        str(back),
    ]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "(rsync)" in out and "bench report:" in out
    copy = remote / "bundles" / tiny_bundle.name
    assert verify_bundle(copy).passed  # the bundle arrived whole
    assert (remote / "src" / "edgekd" / "deploy.py").is_file() and (
        remote / "src" / "deploy" / "rpi" / "install.sh"
    ).is_file()
    report = json.loads((back / "bench.json").read_text())
    assert report == json.loads((copy / "bench" / "bench.json").read_text())  # what came back is what the "Pi" wrote
    assert report["settings"]["device"] == "rpi" and report["host"]["forced"] is True
    assert report["bundle"]["path"] == str(copy)
    rows = {(r["model"], r["format"]): r for r in report["results"]}
    for fmt in ("tflite_int8", "tflite_fp32"):
        assert rows["student", fmt]["status"] == "ok" and rows["student", fmt]["p50_us"] > 0
    assert rows["student", "onnx"]["status"] == "skipped"
    assert (back / "bench.md").read_text().startswith("# edgekd bench")


def test_remote_bench_uses_force_only_when_asked(sshd: dict, tiny_bundle: Path, tmp_path: Path) -> None:
    kwargs = {k: sshd[k] for k in ("host", "port", "identity", "ssh_option")}
    with pytest.raises(DeployError, match=r"remote bench .* failed: this machine is not a Raspberry Pi .*--force"):
        deploy(
            artifacts=tiny_bundle,
            bench=True,
            remote_dir=str(tmp_path / "remote"),
            remote_python=sys.executable,
            threads=1,
            runs=2,
            warmup=0,
            **kwargs,
        )


def test_scp_fallback_and_a_remote_python_without_the_runtime(
    sshd: dict, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = sys.modules["edgekd.deploy"]  # the module (`import edgekd.deploy as mod` gives the function edgekd.deploy)

    real_which = shutil.which
    monkeypatch.setattr(mod.shutil, "which", lambda name: None if name == "rsync" else real_which(name))
    kwargs = {k: sshd[k] for k in ("host", "port", "identity", "ssh_option")}
    result = deploy(artifacts=tiny_bundle, remote_dir=str(tmp_path / "remote"), remote_python=sys.executable, **kwargs)
    assert result.transport == "scp" and not result.installed and result.report is None
    assert verify_bundle(result.remote_bundle).passed
    bare = tmp_path / "bare-python"  # a Python that cannot import numpy: like a Pi before install.sh
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    bare.chmod(0o755)
    with pytest.raises(DeployError, match=r"cannot run the bench .*install numpy and ai-edge-litert there"):
        deploy(artifacts=tiny_bundle, remote_dir=str(tmp_path / "remote"), remote_python=str(bare), **kwargs)


def test_deploy_to_an_ipv6_address(
    sshd: dict, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ssh takes the address bare, scp and rsync in brackets before ":PATH" (they would read its
    first colon as the path's): both transports, and the report fetched back, over ::1."""
    mod = sys.modules["edgekd.deploy"]  # the module (`import edgekd.deploy as mod` gives the function edgekd.deploy)

    if sshd["host6"] is None:
        pytest.skip("no IPv6 loopback on this machine")
    kwargs = {**{k: sshd[k] for k in ("port", "identity", "ssh_option")}, "remote_python": sys.executable}
    result = deploy(
        artifacts=tiny_bundle, host=sshd["host6"], remote_dir=str(tmp_path / "r"), bench=True, force=True, runs=2,
        warmup=0, threads=1, out=tmp_path / "back", **kwargs,
    )  # fmt: skip
    assert result.transport == "rsync" and verify_bundle(result.remote_bundle).passed
    assert json.loads((tmp_path / "back" / "bench.json").read_text())["settings"]["device"] == "rpi"
    real_which = shutil.which
    monkeypatch.setattr(mod.shutil, "which", lambda name: None if name == "rsync" else real_which(name))
    bracketed = sshd["host6"].replace("::1", "[::1]")  # the form scp users write is taken too
    result = deploy(artifacts=tiny_bundle, host=bracketed, remote_dir=str(tmp_path / "s"), **kwargs)
    assert result.transport == "scp" and verify_bundle(result.remote_bundle).passed


def test_unreachable_host_is_one_line(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    port = _free_port()  # nothing listens there
    assert (
        main(
            [
                "deploy",
                "--host",
                "nobody@127.0.0.1",
                "--port",
                str(port),
                "--artifacts",
                str(tiny_bundle),
                "--ssh-option",
                "StrictHostKeyChecking=no",
                "--ssh-option",
                f"UserKnownHostsFile={tmp_path}/kh",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekd: error: connecting on nobody@127.0.0.1 failed:") and len(err.splitlines()) == 1


# ---------------------------------------------------------------- REMOTE_DIR is deploy's own (no sshd needed)

# stand-ins for ssh and scp: the "Pi" is a fake home folder on this machine. ssh skips its options
# and the host and runs the remote command with bash in that home (as a login shell would run it);
# scp copies with cp, a HOST:PATH argument read as PATH in that home.
FAKE_SSH = """#!/bin/bash
while [ $# -gt 0 ]; do case "$1" in -o|-i|-p|-l) shift 2;; -*) shift;; *) break;; esac; done
shift; export HOME={home}; cd "$HOME" || exit 255; exec bash -c "$*"
"""
FAKE_SCP = """#!/bin/bash
while [ $# -gt 0 ]; do case "$1" in -o|-i|-P) shift 2;; -*) shift;; *) break;; esac; done
args=()
for a in "$@"; do
  case "$a" in *:*) a=${{a#*:}}; case "$a" in /*) ;; *) a={home}/$a;; esac;; esac
  args+=("$a")
done
exec cp -R "${{args[@]}}"
"""


@pytest.fixture
def fake_pi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake Pi's home, holding a user's own ``src/important.c``; PATH has the fake ssh/scp and
    the few tools the remote commands use, and no rsync (so scp is used, which clears before copying)."""
    home, bin_ = tmp_path / "pi-home", tmp_path / "bin"
    (home / "src").mkdir(parents=True)
    (home / "src" / "important.c").write_text("int main(void) { return 0; }\n")
    bin_.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("scp", FAKE_SCP)):
        (bin_ / name).write_text(text.format(home=home))
        (bin_ / name).chmod(0o755)
    for tool in ("bash", "sh", "mkdir", "rm", "ls", "cp"):
        (bin_ / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_))
    return home


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_deploy_writes_only_in_a_folder_of_its_own(
    fake_pi: Path, tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["deploy", "--host", "pi@fake", "--artifacts", str(tiny_bundle), "--remote-python", sys.executable]
    before = _tree(fake_pi)
    refused = {
        ".": "home folder itself",  # the user's own ~/src would have been REMOTE_DIR/src
        "~": "home folder itself",
        "~/": "home folder itself",
        "/": "root folder itself",
        "": "--remote-dir is empty",
        "$HOME": "home folder itself",
        "../pi-home": "without '..'",
        str(fake_pi): "is the home folder (or /) itself",  # found on the remote side: the home by its path
        "src": "edgekd did not make",  # a user's folder with files and no marker
        "src/important.c": "is not a folder",
    }
    for remote_dir, needle in refused.items():
        assert main([*base, "--remote-dir", remote_dir]) == 2, remote_dir
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("edgekd: error:") and needle in err, (remote_dir, err)
        assert _tree(fake_pi) == before, f"--remote-dir {remote_dir!r} changed the Pi's home"

    (fake_pi / "empty").mkdir()  # an empty folder is taken (and marked), as a new one is
    for remote_dir in ("empty", "edgekd", "edgekd"):  # the second deploy into edgekd replaces its copy
        assert main([*base, "--remote-dir", remote_dir]) == 0, capsys.readouterr().err
        assert "(scp)" in capsys.readouterr().out
        assert not (fake_pi / remote_dir / "src" / "stale.py").exists()
        copy = fake_pi / remote_dir / "bundles" / tiny_bundle.name
        assert (fake_pi / remote_dir / ".edgekd-deploy").is_file() and verify_bundle(copy).passed
        assert (fake_pi / remote_dir / "src" / "edgekd" / "deploy.py").is_file()
        (copy / "stale.txt").write_text("left by an earlier deploy\n")  # the next deploy removes it
        (fake_pi / remote_dir / "src" / "stale.py").write_text("")
    assert (fake_pi / "src" / "important.c").read_text() == before["src/important.c"].decode()
    assert sorted(p.name for p in fake_pi.iterdir()) == ["edgekd", "empty", "src"]
    assert not (fake_pi / "src" / "edgekd").exists()


def test_host_and_identity_are_checked_before_ssh(
    fake_pi: Path, tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["deploy", "--artifacts", str(tiny_bundle), "--remote-python", sys.executable]
    cases = {
        ("--host", "pi@x y"): "[user@]hostname",
        ("--host", "pi@x:22"): "--port",
        ("--host", "pi@[::1]:22"): "--port",
        ("--host", "pi@fe80::1%eth0;id"): "--port",
        ("--host", "pi@[x]"): "[user@]hostname",
        ("--host", "pi@"): "[user@]hostname",
        ("--host", "@x"): "[user@]hostname",
        ("--host", "pi@x", "--identity", str(tmp_path / "no-key")): "no such file",
        ("--host", "pi@x", "--identity", str(tmp_path)): "is not a file",
    }
    for args, needle in cases.items():
        assert main([*base, *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (args, err)
    assert not (fake_pi / "edgekd").exists()  # no ssh ran
