"""docs/install.md, executed: every ``sh`` block of the page, in order, in a throwaway directory tree.

The page's absolute paths (``/opt/bessgw``, ``/etc/bessgw``, ``/etc/systemd/system``, ...) are moved under
a fresh root directory; ``systemd-sysusers`` creates the ``bessgw`` user in that root's ``/etc/passwd``
(``--root``); ``runuser -u bessgw`` becomes ``setpriv`` to that user's numeric uid and gid, so
``check-config`` really runs unprivileged on the layout the page creates. What needs a running systemd,
the network or the host's user database (``apt-get``, ``git``, ``scp``, ``systemctl``, ``journalctl``,
``usermod``, ``userdel``) is skipped, and only that. The unit files ``install-service`` wrote are checked
with ``systemd-analyze verify``.

Needs root (chown, setpriv) and builds a wheelhouse of bessgw and its plugins (a few minutes on a loaded
machine), so it is marked ``install``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.install, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "install.md"
#: commands the page names that this machine cannot or must not run for real
SKIPPED = {"apt-get", "git", "scp", "systemctl", "journalctl", "usermod", "userdel"}
#: the page's system paths, moved under the throwaway root
MOVED = ("/opt/bessgw", "/etc/bessgw", "/etc/systemd/system", "/etc/sysusers.d", "/var/lib/bessgw",
         "/usr/local/bin", "/root")
_MOVED_PATH = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, MOVED)) + r")(?=[/\s]|$)")
SECTION_TIMEOUT_S = 900


def sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, its ``sh`` blocks) for every ``##`` section that has any, in page order."""
    found = []
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        heading = part.splitlines()[0].strip()
        blocks = re.findall(r"^```sh\n(.*?)^```", part, flags=re.M | re.S)
        if blocks:
            found.append((heading, blocks))
    return found


class Machine:
    """The throwaway root and how the page's commands are moved into it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.skipped: list[str] = []

    def ids(self) -> tuple[int, int]:
        """The bessgw user's uid and gid in the root's user database (created by systemd-sysusers)."""
        for line in (self.root / "etc" / "passwd").read_text().splitlines():
            name, _pw, uid, gid, *_rest = line.split(":")
            if name == "bessgw":
                return int(uid), int(gid)
        raise AssertionError("systemd-sysusers created no bessgw user")

    def translate(self, line: str) -> str | None:
        """The page's command as it runs here, or None when it is one of the skipped ones."""
        if not line.strip() or line.lstrip().startswith("#"):
            return None
        if line.split()[0] in SKIPPED:
            self.skipped.append(line.split()[0])
            return None
        line = re.sub(r"(?<![\w/-])bessgw-src(?=[/\s]|$)", str(REPO), line)
        line = _MOVED_PATH.sub(lambda m: f"{self.root}{m.group(1)}", line)
        if line.strip() == "systemd-sysusers":
            return f"systemd-sysusers --root={self.root}"
        if line.rstrip().endswith(f"{self.root}/etc/bessgw/bessgw.toml") and line.startswith("install "):
            # the config names the state dir by its real path: move it too, like every other path of the page
            config = f"{self.root}/etc/bessgw/bessgw.toml"
            line += f" && sed -i 's|\"/var/lib/bessgw|\"{self.root}/var/lib/bessgw|' {config}"
        if "install-service" in line:
            line += (f" --dest {self.root}/etc/systemd/system --sysusers-dest {self.root}/etc/sysusers.d")
        if "-g bessgw" in line or "runuser -u bessgw" in line:
            uid, gid = self.ids()
            line = line.replace("-o root -g bessgw", f"-o 0 -g {gid}")
            line = line.replace("-o bessgw -g bessgw", f"-o {uid} -g {gid}")
            line = line.replace("runuser -u bessgw --", f"setpriv --reuid={uid} --regid={gid} --clear-groups --")
        return line

    def run(self, block: str) -> subprocess.CompletedProcess[str]:
        """One ``sh`` block, line by line in one bash (``set -e``), from the root's ``/root``."""
        script = "\n".join(cmd for cmd in map(self.translate, block.splitlines()) if cmd is not None)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.root / "root"),
               "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"):
            if name in os.environ:  # the build machine's package index, whatever this machine uses
                env[name] = os.environ[name]
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.root / "root", env=env,
                                capture_output=True, text=True, timeout=SECTION_TIMEOUT_S)
        assert result.returncode == 0, f"{script}\n---\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result


@pytest.fixture
def machine() -> Iterator[Machine]:
    if os.geteuid() != 0:
        pytest.skip("executing docs/install.md needs root (chown to the service user, setpriv)")
    for tool in ("systemd-sysusers", "setpriv", "systemd-analyze"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/bootstrap installs the systemd package)")
    # not under pytest's tmp_path: that is 0700 root, and the service user must reach /opt/bessgw
    root = Path(tempfile.mkdtemp(prefix="bessgw-install-", dir="/tmp"))
    try:
        root.chmod(0o755)
        for directory in ("root", "etc", "usr/local", "var/lib"):
            (root / directory).mkdir(parents=True)
        yield Machine(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def owner_mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def verify_units(m: Machine) -> None:
    units = m.root / "etc" / "systemd" / "system"
    binary = m.root / "opt" / "bessgw" / "bin" / "bessgw"
    shutil.copy(units / "bessgw@.service", units / "bessgw@gw2.service")  # a template is verified as an instance
    try:
        for name in ("bessgw.service", "bessgw@gw2.service"):
            text = (units / name).read_text()
            assert f"ExecStart={binary} run --config /etc/bessgw/" in text, text
            assert "ConfigurationDirectory" not in text.replace("# No ConfigurationDirectory=", "")
            result = subprocess.run(["systemd-analyze", "verify", str(units / name)], capture_output=True,
                                    text=True, timeout=60)
            problems = [line for line in result.stderr.splitlines() if name in line]
            assert result.returncode == 0 and not problems, result.stderr
    finally:
        (units / "bessgw@gw2.service").unlink()


def test_install_doc_runs_and_the_service_user_reads_its_config(machine: Machine) -> None:
    m = machine
    checks: dict[str, Callable[[subprocess.CompletedProcess[str]], None]] = {}

    def check(heading: str):
        def register(function: Callable[[subprocess.CompletedProcess[str]], None]):
            checks[heading] = function
            return function
        return register

    @check("1. Build a wheelhouse")
    def _(result: subprocess.CompletedProcess[str]) -> None:
        wheels = {path.name.split("-")[0] for path in (m.root / "root" / "wheelhouse").glob("*.whl")}
        assert {"bessgw", "bessgw_chemistry", "bessgw_vendor_a", "bessgw_vendor_b", "bessgw_vendor_c"} <= wheels

    @check("2. Install bessgw into /opt/bessgw")
    def _(result: subprocess.CompletedProcess[str]) -> None:
        assert re.search(r"^bessgw \d", result.stdout, flags=re.M), result.stdout
        rows = [line.split() for line in result.stdout.splitlines()]
        assert ["driver", "vendor_a"] in [row[:2] for row in rows] and not any(r[-1] == "failed" for r in rows)
        assert (m.root / "usr" / "local" / "bin" / "bessgw").resolve() == m.root / "opt" / "bessgw" / "bin" / "bessgw"

    @check("3. The service user and the unit files")
    def _(result: subprocess.CompletedProcess[str]) -> None:
        uid, gid = m.ids()
        assert 0 < uid < 1000 and 0 < gid < 1000  # a system user
        assert (m.root / "etc" / "sysusers.d" / "bessgw.conf").exists()
        verify_units(m)

    @check("4. Configuration")
    def _(result: subprocess.CompletedProcess[str]) -> None:
        _uid, gid = m.ids()
        etc = m.root / "etc" / "bessgw"
        assert owner_mode(etc) == (0, gid, 0o750)
        assert owner_mode(etc / "bessgw.toml") == (0, gid, 0o640)
        assert owner_mode(etc / "campus.keys") == (0, gid, 0o640)
        # the engineer's edit: this tree's paths instead of the machine's (the shipped example names both)
        config = etc / "bessgw.toml"
        config.write_text(_MOVED_PATH.sub(lambda match: f"{m.root}{match.group(1)}", config.read_text()))

    @check("5. Check and start")
    def _(result: subprocess.CompletedProcess[str]) -> None:
        assert result.stdout.strip() == "ok", result.stdout
        # and it is the group that makes it readable: any other unprivileged user is refused (exit 78)
        other = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                                str(m.root / "opt" / "bessgw" / "bin" / "bessgw"), "check-config",
                                str(m.root / "etc" / "bessgw" / "bessgw.toml")],
                               capture_output=True, text=True, timeout=60)
        assert other.returncode == 78 and "Permission denied" in other.stderr, other.stderr

    @check("Several gateways on one host")
    def _(result: subprocess.CompletedProcess[str]) -> None:
        assert (m.root / "etc" / "bessgw" / "gw2.toml").exists()

    @check("Upgrade")
    def _(result: subprocess.CompletedProcess[str]) -> None:
        assert result.stdout.splitlines()[-1] == "ok", result.stdout
        verify_units(m)

    @check("Uninstall")
    def _(result: subprocess.CompletedProcess[str]) -> None:
        for gone in ("opt/bessgw", "usr/local/bin/bessgw", "etc/systemd/system/bessgw.service",
                     "etc/systemd/system/bessgw@.service", "etc/sysusers.d/bessgw.conf", "etc/bessgw"):
            assert not (m.root / gone).exists(), gone

    page = sections(DOC.read_text())
    assert [heading for heading, _blocks in page] == list(checks), "a section of docs/install.md is not checked"
    for heading, blocks in page:
        results = [m.run(block) for block in blocks]
        checks[heading](subprocess.CompletedProcess(
            [], 0, "".join(r.stdout for r in results), "".join(r.stderr for r in results)))
    assert set(m.skipped) == SKIPPED  # nothing else was left out, and every skip is still on the page
