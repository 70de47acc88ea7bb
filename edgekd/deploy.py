"""``edgekd deploy``: copy a bundle to a Raspberry Pi over ssh, install the Pi side if it is
missing, run ``edgekd bench --device rpi`` there and bring ``bench.json`` back.

Only the OpenSSH client (and rsync where both ends have it; scp otherwise) is needed here; the Pi
needs Python 3 with venv. The remote side runs the edgekd that is deployed with the bundle (copied
to ``REMOTE_DIR/src`` each time), so the Pi never runs an older bench than the host's.

Remote layout (``remote_dir``, default ``edgekd`` in the remote home)::

    .edgekd-deploy    marks the folder as made by deploy: deploy writes (and replaces) only in such a
                      folder, or in a new or empty one that it then marks
    src/              edgekd package, pyproject.toml, deploy/rpi/install.sh
    venv/             numpy + ai-edge-litert (+ edgekd), made by install.sh on first deploy
    bundles/<name>/   the bundle; bench/ inside it holds the remote report
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.bundle import REPORT_DIRS, require_verified
from edgekd.errors import EdgekdError
from edgekd.limits import (
    MAX_PORT,
    MAX_TIMEOUT_S,
    check_number,
    check_runs,
    check_threads,
)
from edgekd.outputs import check_report_dir
from edgekd.paths import is_under
from edgekd.procs import run_bounded

if TYPE_CHECKING:
    from edgekd.config import DeployConfig

SSH_TIMEOUT_S = 15  # ConnectTimeout: a Pi that is off or unreachable fails fast
# keep-alives: a connection whose other end vanished (Pi unplugged mid-copy) drops after ~45 s
KEEPALIVE = ("ServerAliveInterval=15", "ServerAliveCountMax=3")
# what the Pi side needs of the source tree (install.sh installs from it; the bench imports it)
SOURCE_PARTS = ("edgekd", "pyproject.toml", "README.md", "deploy/rpi")
MARKER = ".edgekd-deploy"  # in REMOTE_DIR: the folder is deploy's own (it replaces src/ and bundles/<name>/ there)
HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a DNS name, IPv4 address or ~/.ssh/config Host alias
EXIT_REFUSED = 3  # the remote check below: REMOTE_DIR is not deploy's to write in (stdout names why)
REFUSALS = {  # why, as the check prints it → the rest of the one error line
    "notdir": "is not a folder; give another --remote-dir",
    "home": "is the home folder (or /) itself; give deploy a folder of its own there, e.g. edgekd",
    "foreign": f"is a folder edgekd did not make (not empty, no {MARKER} in it) and deploy writes only into its "
    f"own: give a new or empty --remote-dir (a folder of an earlier edgekd deploy: add an empty {MARKER} file to it)",
}

# One ssh round trip, run by sh (whatever the login shell is) with $1 = REMOTE_DIR, $2 = the bundle's
# name, $3 = "rsync" when this side has it. It refuses a REMOTE_DIR that is not a folder, that is the
# home or / (physical paths, so links count), or that holds files but no marker; otherwise it makes
# and marks the folder, clears the old copy when scp (which cannot delete) will be used, and prints
# the folder's path and the transport.
_PREPARE = f"""
d=$1
home=$(cd ~ 2>/dev/null && pwd -P)
if [ -e "$d" ] || [ -L "$d" ]; then
  [ -d "$d" ] || {{ echo notdir; exit {EXIT_REFUSED}; }}
  real=$(cd "$d" && pwd -P) || exit 1
  if [ "$real" = / ] || [ "$real" = "$home" ]; then echo home; exit {EXIT_REFUSED}; fi
  if [ ! -f "$d/{MARKER}" ] || [ -L "$d/{MARKER}" ]; then
    found=$(ls -A "$d") || exit 1
    [ -z "$found" ] || {{ echo foreign; exit {EXIT_REFUSED}; }}
  fi
fi
mkdir -p "$d" && cd "$d" || exit 1
[ -f {MARKER} ] || echo "made by edgekd deploy, which replaces src/ and bundles/NAME/ here" > {MARKER} || exit 1
t=scp
if [ "$3" = rsync ] && command -v rsync >/dev/null; then t=rsync; else rm -rf "bundles/$2" src || exit 1; fi
mkdir -p "bundles/$2" src/deploy && pwd && echo $t
"""


class DeployError(EdgekdError):
    """The remote host cannot be reached, set up, or benched."""


@dataclass
class DeployResult:
    host: str
    remote_bundle: str  # absolute path on the remote
    transport: str  # rsync | scp
    installed: bool  # True when install.sh ran on this deploy
    bench_json: Path | None = None  # local copy of the remote bench.json
    report: dict[str, Any] | None = None  # its contents


def source_root() -> Path:
    """The edgekd source tree this package runs from (deploy copies it to the Pi)."""
    root = Path(__file__).resolve().parents[1]
    missing = [part for part in SOURCE_PARTS if not (root / part).exists()]
    if missing:
        raise DeployError(
            f"deploy needs an edgekd source checkout (git clone + pip install -e .); {root} lacks {', '.join(missing)}"
        )
    return root


class _Remote:
    """ssh / rsync / scp to one host with the same options."""

    def __init__(
        self, host: str, port: int | None, identity: str | None, ssh_option: Sequence[str], timeout_s: float
    ) -> None:
        if shutil.which("ssh") is None:
            raise DeployError("ssh is not installed here (Debian/Ubuntu: apt install openssh-client)")
        self.host, self.target = host_forms(host)  # ssh's form; scp/rsync's (before :PATH)
        self.timeout_s = timeout_s  # each step; the install and the bench pass their own
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_TIMEOUT_S}"]  # never prompt for a password
        for opt in KEEPALIVE:
            opts += ["-o", opt]
        for opt in ssh_option:
            opts += ["-o", opt]
        if identity:
            opts += ["-i", str(identity)]
        self.opts = opts
        self.port = port

    def ssh_argv(self) -> list[str]:
        return ["ssh", *self.opts, *(["-p", str(self.port)] if self.port else [])]

    def _run(self, argv: list[str], what: str, timeout_s: float | None, key: str) -> subprocess.CompletedProcess:
        """``argv`` within the time limit (the process group is killed when it passes)."""
        limit = timeout_s if timeout_s is not None else self.timeout_s
        try:
            return run_bounded(argv, limit)
        except subprocess.TimeoutExpired:
            raise DeployError(
                f"{what} on {self.host} gave no result within {limit:g} s and was stopped (is the host up and the "
                "network alive? "
                f"raise the limit with {key})"
            ) from None

    def run(
        self,
        command: str,
        what: str,
        check: bool = True,
        timeout_s: float | None = None,
        key: str = "--timeout / deploy.timeout_s",
    ) -> subprocess.CompletedProcess:
        proc = self._run([*self.ssh_argv(), self.host, command], what, timeout_s, key)
        if check and proc.returncode != 0:
            raise DeployError(f"{what} on {self.host} failed: {_last_line(proc)}")
        return proc

    def copy_to(self, sources: list[Path], dest: str, transport: str, exclude: Sequence[str] = ()) -> None:
        """Copy files/folders into the remote folder ``dest`` (replacing what is there)."""
        if transport == "rsync":
            excludes = [f"--exclude={pattern}" for pattern in exclude]
            argv = [
                "rsync",
                "-a",
                "--delete",
                *excludes,
                "-e",
                shlex.join(self.ssh_argv()),
                *map(str, sources),
                f"{self.target}:{dest}/",
            ]
        else:
            argv = [
                "scp",
                "-q",
                "-r",
                *self.opts,
                *(["-P", str(self.port)] if self.port else []),
                *map(str, sources),
                f"{self.target}:{dest}/",
            ]
        proc = self._run(
            argv, f"copying {', '.join(s.name for s in sources)} with {transport}", None, "--timeout / deploy.timeout_s"
        )
        if proc.returncode != 0:
            raise DeployError(
                f"copying {', '.join(s.name for s in sources)} to {self.target}:{dest} with {transport} failed: "
                f"{_last_line(proc)}"
            )

    def copy_from(self, remote: str, local: Path, transport: str) -> None:
        """Fetch one remote file to ``local``: into a temporary file beside it, then renamed onto it,
        so that a symlink at ``local`` is replaced, never written through."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{local.name}.", suffix=".tmp", dir=local.parent))
        try:
            got = tmp / local.name
            if transport == "rsync":
                argv = ["rsync", "-a", "-e", shlex.join(self.ssh_argv()), f"{self.target}:{remote}", str(got)]
            else:
                argv = [
                    "scp",
                    "-q",
                    *self.opts,
                    *(["-P", str(self.port)] if self.port else []),
                    f"{self.target}:{remote}",
                    str(got),
                ]
            proc = self._run(argv, f"fetching {remote}", None, "--timeout / deploy.timeout_s")
            if proc.returncode != 0:
                raise DeployError(f"fetching {remote} from {self.host} failed: {_last_line(proc)}")
            if got.is_symlink() or not got.is_file():
                raise DeployError(f"fetching {remote} from {self.host} gave no plain file")
            os.replace(got, local)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _ipv6(name: str) -> str | None:
    """The address of an IPv6 literal (bare or in brackets, a %scope allowed), or None."""
    import ipaddress

    inner = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    if not re.fullmatch(r"[0-9A-Fa-f:.]+(%[\w.-]+)?", inner):  # the scope is an interface name, no spaces
        return None
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        return None
    return inner


def check_host(host: str) -> None:
    """``--host`` as ssh, scp and rsync all read it: ``[user@]hostname``, no port, no spaces; the
    hostname may be an IPv6 address (``pi@fe80::1%eth0`` or ``pi@[fe80::1]``)."""
    user, at, name = host.rpartition("@")
    if ":" in name and _ipv6(name) is None:
        raise DeployError(
            f"--host takes no port, got {host!r}: give the port with --port (an IPv6 address is taken as it is, "
            "e.g. pi@fe80::1%eth0)"
        )
    if not (HOST_NAME.fullmatch(name) or _ipv6(name)) or (at and not re.fullmatch(r"[^\s:/]+", user)):
        raise DeployError(f"--host must be [user@]hostname (no spaces, not starting with '-'), got {host!r}")


def host_forms(host: str) -> tuple[str, str]:
    """(``host`` as ssh takes it, as scp and rsync take it before ``:PATH``): an IPv6 address is
    bare for ssh and in brackets for the copy tools, which would read its first colon as the path's."""
    user, at, name = host.rpartition("@")
    address = _ipv6(name)
    if address is None:
        return host, host
    return f"{user}{at}{address}", f"{user}{at}[{address}]"


def check_identity(identity: str | Path) -> Path:
    """``--identity``: an existing key file (``~`` expanded, as ssh would)."""
    key = Path(identity).expanduser()
    if not key.exists():
        raise DeployError(f"--identity {identity}: no such file")
    if not key.is_file():
        raise DeployError(f"--identity {identity} is not a file (an ssh private key such as ~/.ssh/id_ed25519)")
    return key


def remote_base(remote_dir: str) -> str:
    """``--remote-dir`` as the remote shell gets it (relative: in the remote home). Refused here: an
    empty one, ``/`` and the home itself (deploy replaces folders inside REMOTE_DIR, so it must be a
    folder of its own), ``..`` parts, and ``~user``/``$VAR`` (given to the remote as is, never expanded)."""
    if not remote_dir.strip():
        raise DeployError("--remote-dir is empty; give a folder of deploy's own on the Pi, e.g. edgekd")
    absolute = remote_dir.startswith("/")
    parts = [p for p in remote_dir.removeprefix("~/").split("/") if p not in ("", ".")]
    if not parts or parts == ["~"] or parts in (["$HOME"], ["${HOME}"]):
        raise DeployError(
            f"--remote-dir {remote_dir!r} is the remote {'root' if absolute and not parts else 'home'} folder itself: "
            "deploy replaces folders inside REMOTE_DIR, so give it one of its own, e.g. edgekd"
        )
    if ".." in parts:
        raise DeployError(f"--remote-dir {remote_dir!r}: give the folder without '..' parts")
    if not absolute and parts[0].startswith(("~", "$")):
        raise DeployError(
            f"--remote-dir {remote_dir!r}: ~user and $VARIABLES are not expanded on the Pi; give a path in the "
            "remote home (edgekd) or an absolute one"
        )
    base = "/".join(parts)
    return f"/{base}" if absolute else base if not base.startswith("-") else f"./{base}"


def deploy_settings(config: str | Path | None = None, overrides: Sequence[str] = ()) -> DeployConfig:
    """``deploy.*`` settings: defaults ← the ``deploy:`` section of a YAML file ← ``deploy.KEY=VALUE``."""
    from edgekd.config import DeployConfig, from_dict, load_yaml, parse_override

    tree: dict[str, Any] = {}
    if config is not None:
        section = load_yaml(config).get("deploy") or {}
        if not isinstance(section, dict):
            raise DeployError(f"{config}: the deploy section must be a mapping of deploy keys")
        tree.update(section)
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] != "deploy" or len(keys) != 2:
            raise DeployError(f"--set {'.'.join(keys)}: deploy takes deploy.* keys only (timeout_s, bench_timeout_s)")
        tree[keys[1]] = value
    return from_dict(DeployConfig, tree, prefix="deploy.")


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in ((proc.stderr or "") + "\n" + (proc.stdout or "")).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else f"exit status {proc.returncode}"
    return text.removeprefix("edgekd: error: ")[:300]


def _runtime_check(python: str, src: str) -> str:
    """Remote shell: does ``python`` import numpy, a TFLite runtime and the deployed edgekd?"""
    probe = "import numpy; from edgekd.runtimes.tflite_runner import interpreter_class; print(interpreter_class()[1])"
    return f"PYTHONPATH={shlex.quote(src)} {shlex.quote(python)} -c {shlex.quote(probe)}"


def deploy(
    host: str,
    artifacts: str | Path | None = None,
    bench: bool = False,
    force: bool = False,
    remote_dir: str = "edgekd",
    remote_python: str | None = None,
    port: int | None = None,
    identity: str | Path | None = None,
    ssh_option: Sequence[str] = (),
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    out: str | Path | None = None,
    timeout: float | None = None,
    bench_timeout: float | None = None,
    config: str | Path | None = None,
    set: Sequence[str] = (),
) -> DeployResult:
    """Copy a verified bundle to ``host`` ([user@]pi) and, with ``bench``, bench it there.

    ``remote_dir``: the remote folder (relative paths are in the remote home), deploy's own: new,
    empty, or marked (``.edgekd-deploy``) by an earlier deploy; anything else is refused before any
    copy, since deploy replaces ``src/`` and ``bundles/<name>/`` in it. ``remote_python``:
    an existing interpreter to run the bench with (it must have numpy and a TFLite runtime); by
    default ``REMOTE_DIR/venv/bin/python``, created by ``deploy/rpi/install.sh`` when it is missing.
    ``force`` passes ``--force`` to the remote bench (a host that is not a Pi); without it a
    non-Pi host refuses. ``port``/``identity``/``ssh_option`` ("Key=Value", repeatable) go to ssh.
    The remote ``bench.json`` (and ``bench.md``) land in ``out`` (default ``BUNDLE/bench/<host>``).
    ``timeout`` (seconds) limits each ssh/scp/rsync step and ``bench_timeout`` the remote install
    and bench; their defaults are ``deploy.timeout_s``/``deploy.bench_timeout_s`` from ``config``
    (a YAML file's ``deploy:`` section) and ``set`` ("deploy.timeout_s=60"). A step that passes its
    limit is stopped (its whole process group) and reported in one line.
    """
    from edgekd.benchmark.run import latest_bundle
    from edgekd.ui import log

    settings = deploy_settings(config, set)
    timeout = settings.timeout_s if timeout is None else timeout
    bench_timeout = settings.bench_timeout_s if bench_timeout is None else bench_timeout
    check_number("--port", port, integer=True, low=1, high=MAX_PORT, optional=True, error=DeployError)
    check_threads("--threads", threads, error=DeployError)  # the Pi's cores are unknown here; its bench checks them
    check_runs(runs, warmup, error=DeployError)
    check_number("--timeout", timeout, low=0, low_open=True, high=MAX_TIMEOUT_S, error=DeployError)
    check_number("--bench-timeout", bench_timeout, low=0, low_open=True, high=MAX_TIMEOUT_S, error=DeployError)
    check_host(host)
    base = remote_base(remote_dir)
    key = check_identity(identity) if identity is not None else None
    bundle = Path(artifacts) if artifacts is not None else latest_bundle()
    require_verified(bundle)  # never ship a bundle that does not match its manifest (or holds a link out of it)
    local = None
    if bench:  # where the report comes back is checked before anything is copied or run
        local = Path(out) if out is not None else bundle / "bench" / re.sub(r"[^\w.@-]", "_", host)
        check_report_dir(local, "--out", "remote bench report", inside=bundle if is_under(local, bundle) else None)
    src = source_root()
    remote = _Remote(host, port, str(key) if key else None, ssh_option, timeout)
    name = bundle.resolve().name

    # REMOTE_DIR is checked, made and marked, and scp's old copy cleared, before anything is copied
    local_rsync = "rsync" if shutil.which("rsync") else "none"
    prepare = f"sh -c {shlex.quote(_PREPARE)} edgekd-deploy {shlex.join([base, name, local_rsync])}"
    probe = remote.run(prepare, "connecting", check=False)
    lines = probe.stdout.strip().splitlines()
    if probe.returncode == EXIT_REFUSED and lines and lines[-1] in REFUSALS:
        raise DeployError(f"--remote-dir {remote_dir} on {host} {REFUSALS[lines[-1]]}")
    if probe.returncode != 0 or len(lines) < 2 or lines[-1] not in ("rsync", "scp"):
        raise DeployError(f"connecting on {host} failed: {_last_line(probe)}")
    root, transport = lines[-2], lines[-1]  # the last lines: a login script may print before them
    remote_bundle, remote_src = f"{root}/bundles/{name}", f"{root}/src"
    log(f"deploy: {bundle} → {host}:{remote_bundle} ({transport})")
    parts = sorted(p for p in bundle.iterdir() if p.name not in REPORT_DIRS and not p.name.startswith("."))
    remote.copy_to(parts, remote_bundle, transport)
    remote.copy_to(
        [src / p for p in SOURCE_PARTS if "/" not in p], remote_src, transport, exclude=("__pycache__", "*.pyc")
    )
    remote.copy_to([src / "deploy" / "rpi"], f"{remote_src}/deploy", transport)

    python = remote_python or f"{root}/venv/bin/python"
    installed = False
    check = remote.run(_runtime_check(python, remote_src), "checking the Pi side", check=False)
    if check.returncode != 0:
        if remote_python is not None:
            raise DeployError(
                f"{remote_python} on {host} cannot run the bench ({_last_line(check)}); install numpy and "
                "ai-edge-litert there, or leave out --remote-python to let deploy make a venv"
            )
        log(f"deploy: installing the Pi side on {host} (deploy/rpi/install.sh: venv with numpy + ai-edge-litert)")
        remote.run(
            f"bash {shlex.quote(remote_src)}/deploy/rpi/install.sh {shlex.quote(root)}/venv {shlex.quote(remote_src)}",
            "installing the Pi side",
            timeout_s=bench_timeout,
            key="--bench-timeout / deploy.bench_timeout_s",
        )
        installed = True
        check = remote.run(_runtime_check(python, remote_src), "checking the Pi side after the install")
    log(f"deploy: {host} runs {check.stdout.strip().splitlines()[-1] if check.stdout.strip() else 'a TFLite runtime'}")
    result = DeployResult(host, remote_bundle, transport, installed)
    if not bench:
        return result

    argv = [
        "-m",
        "edgekd",
        "bench",
        "--device",
        "rpi",
        "--artifacts",
        remote_bundle,
        "--out",
        f"{remote_bundle}/bench",
        "--runs",
        str(runs),
        "--warmup",
        str(warmup),
    ]
    if threads is not None:
        argv += ["--threads", str(threads)]
    if force:  # only when asked: a host that is not a Pi otherwise refuses, as it should
        argv.append("--force")
    log(f"deploy: benching on {host}")
    proc = remote.run(
        f"PYTHONPATH={shlex.quote(remote_src)} {shlex.quote(python)} {shlex.join(argv)}",
        "the remote bench",
        check=False,
        timeout_s=bench_timeout,
        key="--bench-timeout / deploy.bench_timeout_s",
    )
    if proc.returncode not in (0, 1):  # 1: the bench ran and a gate failed; its report still exists
        raise DeployError(f"the remote bench on {host} failed: {_last_line(proc)}")
    print(proc.stdout, end="")
    assert local is not None
    try:
        for file in ("bench.json", "bench.md"):
            remote.copy_from(f"{remote_bundle}/bench/{file}", local / file, transport)
    except DeployError:
        if proc.returncode != 0:  # exit 1 without a report: a crash, not a failed gate
            raise DeployError(f"the remote bench on {host} failed: {_last_line(proc)}") from None
        raise
    result.bench_json = local / "bench.json"
    from edgekd.benchmark.row import check_schema

    try:  # the Pi ran the edgekd deployed with the bundle: another layout means a stale remote copy
        result.report = check_schema(json.loads(result.bench_json.read_text()), f"{host}'s bench report")
    except ValueError as exc:
        raise DeployError(str(exc)) from None
    log(f"deploy: {host} bench report in {local}")
    return result
