"""A DECNET host in a temporary prefix, made and run by DECNET 1.0.0's own code.

Run with any python3 (3.9+). Everything that touches DECNET runs in the
prefix's own virtualenv, with DECNET's own modules: pip installs DECNET there,
DECNET's `decnet bus` serves the bus, DECNET's `repo.initialize()` or
`decnet api` creates the DB, DECNET's `save_state()` writes the state file,
DECNET's API answers the queries. Nothing here imitates DECNET.

Layout of a prefix (as `decnet init` lays out a host, under PREFIX):

    PREFIX/opt/decnet/venv/          DECNET's virtualenv (`pip install decnet==1.0.0`)
    PREFIX/opt/decnet/.env.local     DECNET's secrets (JWT secret, admin password)
    PREFIX/etc/decnet/decnet.ini     DECNET's ini; DECNET_CONFIG points here
    PREFIX/run/decnet/bus.sock       `decnet bus`'s socket (named in the ini's [bus] socket)
    PREFIX/var/log/decnet/           DECNET's logs, and the output of what host.py starts
    PREFIX/host.json                 what host.py started (pids, API URL, admin password)

DECNET's root (state file, SQLite DB) is wherever DECNET puts it: for a pip
install, PREFIX/opt/decnet/venv/lib/python3.X/site-packages; for --editable,
the checkout. `facts` prints what DECNET itself says.

Subcommands (each prints one JSON document on stdout; on failure a message on
stderr and exit 1):

    install PREFIX [--wheelhouse DIR] [--editable CHECKOUT] [--python PYTHON] [--shared-deps DIR]
        Creates the venv and pip-installs DECNET 1.0.0 from the wheelhouse that
        scripts/services builds (no network), writes .env.local and the ini.
        --shared-deps SITE pip-installs DECNET alone (--no-deps) and reaches its
        dependencies in SITE (the site-packages of scripts/services' DECNET venv, which
        holds the same wheels; through PREFIX/shared-deps, links to all of SITE but DECNET)
        with a .pth file: 2-4 s and 7 MB instead of 15-40 s and 300 MB a prefix. DECNET itself is pip-installed in the prefix all the same, so
        everything it computes from its own place (its root, state file, DB) is unchanged;
        the prefix's own site-packages comes first on sys.path, so its `decnet` is the one imported.
        --editable SOURCE copies SOURCE (DECNET's source, e.g. the unpacked sdist that
        scripts/services keeps) into PREFIX/opt/decnet and installs that checkout with
        `pip install -e`, as decnet init advises: DECNET's root is then the install dir.
    write-ini PREFIX            Replaces the ini with standard input.
    env PREFIX                  The environment of DECNET's processes in the prefix,
                                and DECNET_INSTALL_DIR/DECNET_CONFIG for the tool.
    facts PREFIX                What DECNET itself resolves in the prefix: root, state
                                file, SQLite DB, bus, DB type (and MySQL URL).
    ini-env PREFIX FILE         The DECNET_* variables DECNET's load_ini_config() sets
                                from FILE, with an empty environment; or its error.
    bus PREFIX                  Starts `decnet bus` (socket as DECNET resolves it);
                                waits for the socket.
    init-db PREFIX              DECNET's get_repository().initialize(); the tables after.
    api PREFIX                  Starts `decnet api --host 127.0.0.1 --port FREE`; waits
                                until it answers HTTP.
    save-state PREFIX [--example N --name-prefix P]
                                DECNET's save_state() of the DecnetConfig on standard
                                input (JSON of its fields), or of N example deckies
                                named P-01… (image decnet-test-busybox:latest).
    containers PREFIX           `docker run` one container per service of each decky of
                                the state file, named <decky>-<service>, removed by `stop`.
    query PREFIX                Logs in to the API as admin (changing the password the
                                first time, as must_change_password demands), then
                                GET /api/v1/deckies and GET /api/v1/workers.
    reconciler PREFIX           Starts DECNET's own reconciler, `decnet reconcile`, as its unit does.
    stop PREFIX [--only api|bus|reconciler]
                                Stops what bus/api/reconciler started and removes the
                                containers; with --only, stops that one alone (to start it again).
"""
import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DECNET_VERSION = "1.0.0"
STATE_DIR = Path(os.environ.get("DECNET_TEST_STATE_DIR", "/var/tmp/decnet-reconcile-test"))
DEFAULT_WHEELHOUSE = STATE_DIR / f"decnet-wheelhouse-{DECNET_VERSION}"
# pip of the DECNET venv scripts/services installs; `pip --python` installs into another venv.
DEFAULT_PIP = Path(os.environ.get("DECNET_TEST_VENV", STATE_DIR / "decnet-venv")) / "bin" / "pip"
TEST_IMAGE = os.environ.get("DECNET_TEST_IMAGE", "decnet-test-busybox:latest")
START_TIMEOUT = 90


class Failure(Exception):
    pass


class Prefix:
    def __init__(self, path):
        self.path = Path(path).absolute()
        self.install_dir = self.path / "opt" / "decnet"
        self.venv = self.install_dir / "venv"
        self.python = self.venv / "bin" / "python"
        self.decnet = self.venv / "bin" / "decnet"
        self.env_local = self.install_dir / ".env.local"
        self.ini = self.path / "etc" / "decnet" / "decnet.ini"
        self.run_dir = self.path / "run" / "decnet"
        self.socket = self.run_dir / "bus.sock"
        self.log_dir = self.path / "var" / "log" / "decnet"
        self.record = self.path / "host.json"

    def load(self):
        if not self.record.is_file():
            return {}
        return json.loads(self.record.read_text())

    def save(self, record):
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(self.record)

    def require_install(self):
        if not self.decnet.is_file():
            raise Failure(f"{self.path} has no DECNET (run `host.py install {self.path}` first)")

    def env_local_values(self):
        """`.env.local` read as systemd's EnvironmentFile= reads a simple file."""
        values = {}
        if self.env_local.is_file():
            for line in self.env_local.read_text().splitlines():
                line = line.strip()
                if not line or line.startswith(("#", ";")) or "=" not in line:
                    continue
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
        return values

    def decnet_env(self):
        """The environment of a DECNET unit in this prefix: the caller's, less any
        DECNET_*, plus the unit's Environment= lines and .env.local (EnvironmentFile=)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("DECNET_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        env.update({
            # decnet init makes the install dir the decnet user's home.
            "HOME": str(self.install_dir),
            "DECNET_CONFIG": str(self.ini),
            "DECNET_SYSTEM_LOGS": str(self.log_dir / "decnet.system.log"),
            "DECNET_INGEST_LOG_FILE": str(self.log_dir / "decnet.log"),
            "DECNET_AGENT_LOG_FILE": str(self.log_dir / "agent.log"),
        })
        env.update(self.env_local_values())
        return env

    def in_decnet(self, code, *args, check=True):
        """Runs `code` with the prefix's python, in a DECNET unit's environment and
        working directory; returns its JSON output."""
        self.require_install()
        proc = subprocess.run(
            [str(self.python), "-c", code, *args],
            cwd=self.install_dir, env=self.decnet_env(),
            capture_output=True, text=True, timeout=300,
        )
        if proc.returncode != 0 and check:
            raise Failure(f"DECNET's python failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise Failure(f"DECNET's python printed no JSON:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return json.loads(lines[-1]), proc


def emit(document):
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def default_ini(prefix):
    # decnet init's placeholder (cli/init.py _CONFIG_PLACEHOLDER, abridged), plus
    # the prefix's bus socket: /run/decnet belongs to the machine, not the prefix.
    import grp
    import pwd
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return (
        "# /etc/decnet/decnet.ini — DECNET host config (written by tests/decnet/host.py).\n"
        "[decnet]\n"
        f"api-user = {user}\n"
        f"api-group = {group}\n"
        "# mode = master                          # or \"agent\"\n"
        "\n"
        "[bus]\n"
        f"socket = {prefix.socket}        # the prefix's own bus\n"
    )


def cmd_install(args):
    prefix = Prefix(args.prefix)
    started = time.monotonic()
    if prefix.venv.exists():
        raise Failure(f"{prefix.venv} exists already")
    wheelhouse = Path(args.wheelhouse)
    if not wheelhouse.is_dir():
        raise Failure(f"no wheelhouse at {wheelhouse} (scripts/services builds it)")
    pip = Path(args.pip)
    if not pip.is_file():
        raise Failure(f"no pip at {pip} (scripts/services installs it)")
    for directory in (prefix.install_dir, prefix.ini.parent, prefix.run_dir, prefix.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    # DECNET's installer makes the venv with `python -m venv`; pip comes from the
    # services venv (`pip --python`), which saves ensurepip's seconds per prefix.
    subprocess.run([args.python, "-m", "venv", "--without-pip", str(prefix.venv)],
                   check=True, capture_output=True, text=True)
    venv_seconds = time.monotonic() - started
    if args.editable:
        # decnet init's layout: the install dir is the checkout, installed editable
        # into its venv. A copy, since DECNET's root (state file, DB) is the checkout.
        shutil.copytree(args.editable, prefix.install_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
        what = ["-e", str(prefix.install_dir)]
    else:
        what = [f"decnet=={DECNET_VERSION}"]
    if args.shared_deps:
        shared = Path(args.shared_deps).absolute()
        if not (shared / "fastapi").is_dir():
            raise Failure(f"{shared} holds no DECNET dependencies (scripts/services installs them)")
        what = ["--no-deps", *what]
    else:
        what = [*what, "greenlet"]
    # --no-compile: no .pyc at install time (Python writes them at first import);
    # it cuts the install from about 100 s to under 20 s and changes nothing DECNET does.
    proc = subprocess.run(
        [str(pip), "--python", str(prefix.python), "install", "--quiet", "--disable-pip-version-check",
         "--no-index", "--find-links", str(wheelhouse), "--no-compile", *what],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise Failure(f"pip install failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    pip_seconds = time.monotonic() - started - venv_seconds
    if args.shared_deps:
        # The dependencies without DECNET itself: an editable install's finder comes
        # last on sys.meta_path, so a `decnet` on sys.path would win over the checkout.
        view = prefix.path / "shared-deps"
        view.mkdir()
        for entry in shared.iterdir():
            if entry.name != "decnet" and not entry.name.startswith("decnet-"):
                (view / entry.name).symlink_to(entry)
        (site_packages(prefix.venv) / "zz-decnet-test-shared-deps.pth").write_text(f"{view}\n")
    prefix.env_local.write_text(
        "# DECNET's secrets, as decnet init leaves them to the operator (written by tests/decnet/host.py).\n"
        f"DECNET_JWT_SECRET={secrets.token_hex(32)}\n"
        f"DECNET_ADMIN_PASSWORD=Adm1n-{secrets.token_hex(8)}\n"
    )
    prefix.env_local.chmod(0o600)
    if not prefix.ini.exists():
        prefix.ini.write_text(default_ini(prefix))
    facts, _ = prefix.in_decnet(FACTS_CODE)
    prefix.save({"pids": {}, "containers": []})
    emit({
        "prefix": str(prefix.path),
        "install_dir": str(prefix.install_dir),
        "venv": str(prefix.venv),
        "ini": str(prefix.ini),
        "env_local": str(prefix.env_local),
        "root": facts["root"],
        "state_file": facts["state_file"],
        "sqlite_db": facts["sqlite_db"],
        "seconds": {"venv": round(venv_seconds, 1), "pip": round(pip_seconds, 1),
                    "total": round(time.monotonic() - started, 1)},
    })


def site_packages(venv):
    found = sorted(venv.glob("lib/python3.*/site-packages"))
    if len(found) != 1:
        raise Failure(f"{venv}: expected one site-packages, found {found}")
    return found[0]


def cmd_write_ini(args):
    prefix = Prefix(args.prefix)
    prefix.ini.parent.mkdir(parents=True, exist_ok=True)
    prefix.ini.write_text(sys.stdin.read())
    emit({"ini": str(prefix.ini)})


def cmd_env(args):
    prefix = Prefix(args.prefix)
    emit({
        "decnet": prefix.decnet_env(),
        # What the tool needs to find this prefix's DECNET: the install dir and the ini.
        "tool": {"DECNET_INSTALL_DIR": str(prefix.install_dir), "DECNET_CONFIG": str(prefix.ini)},
    })


FACTS_CODE = r"""
import inspect, json, os
import decnet  # reads the ini, as every DECNET process does
from decnet.config import _ROOT, STATE_FILE
from decnet.web.db.sqlite.repository import SQLiteRepository
out = {
    "root": str(_ROOT),
    "state_file": str(STATE_FILE),
    "sqlite_db": inspect.signature(SQLiteRepository.__init__).parameters["db_path"].default,
    "db_type": os.environ.get("DECNET_DB_TYPE", "sqlite").lower(),
}
if os.environ.get("DECNET_BUS_ENABLED", "true").lower() == "false":
    out["bus"] = "disabled"
elif os.environ.get("DECNET_BUS_TYPE", "unix").lower() != "unix":
    out["bus"] = os.environ.get("DECNET_BUS_TYPE", "unix").lower()
else:
    from decnet.bus.factory import _default_socket_path
    out["bus"] = "unix"
    out["bus_socket"] = _default_socket_path()
if out["db_type"] == "mysql":
    from decnet.web.db.mysql.database import resolve_url
    try:
        out["mysql_url"] = resolve_url()
    except ValueError as err:
        out["mysql_url_error"] = str(err)
print(json.dumps(out))
"""


def cmd_facts(args):
    facts, _ = Prefix(args.prefix).in_decnet(FACTS_CODE)
    emit(facts)


INI_ENV_CODE = r"""
import json, os, sys
before = set(os.environ)
try:
    import decnet  # load_ini_config() runs here, from DECNET_CONFIG
except Exception as err:
    print(json.dumps({"error": {"type": type(err).__name__, "message": str(err)}}))
    sys.exit(0)
print(json.dumps({"vars": {k: v for k, v in os.environ.items() if k not in before}}))
"""


def cmd_ini_env(args):
    prefix = Prefix(args.prefix)
    prefix.require_install()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DECNET_CONFIG": str(Path(args.file).absolute()),
           "DECNET_SYSTEM_LOGS": "/dev/null"}
    for assignment in args.set or []:
        key, _, value = assignment.partition("=")
        env[key] = value
    proc = subprocess.run([str(prefix.python), "-c", INI_ENV_CODE], env=env, cwd="/",
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise Failure(f"DECNET's python failed:\n{proc.stderr[-4000:]}")
    document = json.loads(lines[-1])
    document["warnings"] = [line for line in proc.stderr.splitlines() if "decnet.ini:" in line]
    emit(document)


def start(prefix, name, argv):
    """Starts a DECNET command as its unit would, in its own session; logs in the prefix."""
    record = prefix.load()
    old = record.get("pids", {}).get(name)
    if old and alive(old):
        raise Failure(f"{name} runs already (pid {old}); `host.py stop` first")
    log = open(prefix.log_dir / f"{name}.out", "ab")
    proc = subprocess.Popen(argv, cwd=prefix.install_dir, env=prefix.decnet_env(),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    record.setdefault("pids", {})[name] = proc.pid
    prefix.save(record)
    return proc


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(what, ready, proc, log_path):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
    state = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready within {START_TIMEOUT} s"
    raise Failure(f"{what} {state}; its output:\n{tail}")


def cmd_bus(args):
    prefix = Prefix(args.prefix)
    facts, _ = prefix.in_decnet(FACTS_CODE)
    if facts.get("bus") != "unix":
        raise Failure(f"DECNET's bus in this prefix is {facts.get('bus')}, not a unix socket")
    socket_path = Path(facts["bus_socket"])
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.is_socket():
        socket_path.unlink()  # a stale socket from a killed bus
    # As decnet-bus.service does, less --socket: DECNET resolves it (from the ini here).
    proc = start(prefix, "bus", [str(prefix.decnet), "bus"])
    wait_until("decnet bus", socket_path.is_socket, proc, prefix.log_dir / "bus.out")
    emit({"pid": proc.pid, "socket": str(socket_path)})


INIT_DB_CODE = r"""
import asyncio, json, os, sys
from decnet.web.db.factory import get_repository
repo = get_repository()
try:
    asyncio.run(repo.initialize())
except Exception as err:
    print(json.dumps({"error": {"type": type(err).__name__, "message": str(err)[:2000]}}))
    sys.exit(1)
out = {"db_type": os.environ.get("DECNET_DB_TYPE", "sqlite").lower()}
if out["db_type"] == "sqlite":
    import sqlite3
    out["db"] = repo.db_path
    with sqlite3.connect(repo.db_path) as conn:
        out["tables"] = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
        out["alembic_version"] = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
print(json.dumps(out))
"""


def cmd_init_db(args):
    prefix = Prefix(args.prefix)
    document, proc = prefix.in_decnet(INIT_DB_CODE, check=False)
    emit(document)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise Failure("DECNET's initialize() failed")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, method="GET", body=None, token=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"null")
        except ValueError:
            return err.code, None


def answers(url):
    try:
        status, _ = http(url + "/openapi.json", timeout=2)
        return status < 500
    except (OSError, ValueError):
        return False


def cmd_api(args):
    prefix = Prefix(args.prefix)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(prefix, "api", [str(prefix.decnet), "api", "--host", "127.0.0.1", "--port", str(port)])
    wait_until("decnet api", lambda: answers(url), proc, prefix.log_dir / "api.out")
    record = prefix.load()
    record["api_url"] = url
    # `decnet api` runs uvicorn in a session of its own: note it, to stop it too.
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        record.setdefault("pids", {})["uvicorn"] = int(children[0])
    except (OSError, IndexError):
        pass
    prefix.save(record)
    emit({"pid": proc.pid, "url": url})


SAVE_STATE_CODE = r"""
import json, sys
from pathlib import Path
from decnet.config import DecnetConfig, save_state, STATE_FILE
config = DecnetConfig(**json.loads(sys.argv[1]))
save_state(config, Path(sys.argv[2]))
print(json.dumps({"state_file": str(STATE_FILE), "deckies": [d.name for d in config.deckies]}))
"""


def example_config(count, name_prefix):
    return {
        "mode": "unihost",
        "interface": "eth0",
        "subnet": "192.168.77.0/24",
        "gateway": "192.168.77.1",
        "deckies": [
            {
                "name": f"{name_prefix}-{i:02d}",
                "ip": f"192.168.77.{10 + i}",
                "services": ["ssh"],
                "distro": "debian",
                "base_image": TEST_IMAGE,
                "hostname": f"{name_prefix}-{i:02d}",
            }
            for i in range(1, count + 1)
        ],
    }


def cmd_save_state(args):
    prefix = Prefix(args.prefix)
    config = example_config(args.example, args.name_prefix) if args.example else json.loads(sys.stdin.read())
    compose = prefix.install_dir / "decnet-compose.yml"
    document, _ = prefix.in_decnet(SAVE_STATE_CODE, json.dumps(config), str(compose))
    emit(document)


def cmd_containers(args):
    prefix = Prefix(args.prefix)
    facts, _ = prefix.in_decnet(FACTS_CODE)
    state = json.loads(Path(facts["state_file"]).read_text())
    record = prefix.load()
    started = []
    for decky in state["config"]["deckies"]:
        for service in decky["services"]:
            # DECNET's compose names a decky's service container <decky>-<service> ("_" → "-").
            name = f"{decky['name']}-{service.replace('_', '-')}"
            subprocess.run(["docker", "run", "-d", "--name", name, "--label", f"decnet-host-prefix={prefix.path}",
                            TEST_IMAGE], check=True, capture_output=True, text=True)
            record.setdefault("containers", []).append(name)
            prefix.save(record)
            started.append(name)
    emit({"containers": started})


def cmd_query(args):
    prefix = Prefix(args.prefix)
    record = prefix.load()
    url = record.get("api_url")
    if not url:
        raise Failure("no API started in this prefix (`host.py api` first)")
    api = url + "/api/v1"
    password = record.get("admin_password") or prefix.env_local_values()["DECNET_ADMIN_PASSWORD"]
    status, body = http(api + "/auth/login", "POST", {"username": "admin", "password": password})
    if status != 200:
        raise Failure(f"login: HTTP {status} {body}")
    changed = False
    if body.get("must_change_password"):
        new_password = f"Changed-{secrets.token_hex(8)}"
        status, answer = http(api + "/auth/change-password", "POST",
                              {"old_password": password, "new_password": new_password}, body["access_token"])
        if status != 200:
            raise Failure(f"change-password: HTTP {status} {answer}")
        record["admin_password"] = new_password
        prefix.save(record)
        changed = True
        # The change revokes every session: log in again.
        status, body = http(api + "/auth/login", "POST", {"username": "admin", "password": new_password})
        if status != 200:
            raise Failure(f"login after the change: HTTP {status} {body}")
    token = body["access_token"]
    status, deckies = http(api + "/deckies", token=token)
    if status != 200:
        raise Failure(f"GET /api/v1/deckies: HTTP {status} {deckies}")
    status, workers = http(api + "/workers", token=token)
    if status != 200:
        raise Failure(f"GET /api/v1/workers: HTTP {status} {workers}")
    emit({"password_changed": changed, "deckies": deckies, "workers": workers})


def stop_pid(pid, first_signal):
    if not alive(pid):
        return
    try:
        os.kill(pid, first_signal)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def cmd_reconciler(args):
    prefix = Prefix(args.prefix)
    # As decnet-reconciler.service runs it (deploy/decnet-reconciler.service.j2).
    proc = start(prefix, "reconciler", [str(prefix.decnet), "reconcile"])
    time.sleep(0.5)
    if proc.poll() is not None:
        tail = (prefix.log_dir / "reconciler.out").read_text(errors="replace")[-4000:]
        raise Failure(f"decnet reconcile exited with {proc.returncode}:\n{tail}")
    emit({"pid": proc.pid})


# How each process host.py starts is stopped: `decnet api` stops its uvicorn on
# SIGINT (KeyboardInterrupt), then uvicorn itself is stopped if still there.
PROCESSES = {
    "api": (("api", signal.SIGINT), ("uvicorn", signal.SIGTERM)),
    "reconciler": (("reconciler", signal.SIGTERM),),
    "bus": (("bus", signal.SIGTERM),),
}


def cmd_stop(args):
    prefix = Prefix(args.prefix)
    record = prefix.load()
    pids = record.get("pids", {})
    stopped = []
    for what in [args.only] if args.only else PROCESSES:
        for name, first in PROCESSES[what]:
            pid = pids.pop(name, None)
            if pid:
                stop_pid(pid, first)
                stopped.append(name)
    if "api" in stopped:
        record.pop("api_url", None)
    removed = []
    if not args.only:
        for name in record.get("containers", []):
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, text=True)
            removed.append(name)
        record["containers"] = []
    if prefix.record.parent.is_dir():
        prefix.save(record)
    emit({"stopped": stopped, "containers_removed": removed})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install")
    p.add_argument("prefix")
    p.add_argument("--wheelhouse", default=str(DEFAULT_WHEELHOUSE))
    p.add_argument("--pip", default=str(DEFAULT_PIP))
    p.add_argument("--python", default=shutil.which("python3") or "python3")
    p.add_argument("--editable", metavar="CHECKOUT")
    p.add_argument("--shared-deps", metavar="SITE_PACKAGES")
    p.set_defaults(func=cmd_install)
    for name, func in (("write-ini", cmd_write_ini), ("env", cmd_env), ("facts", cmd_facts), ("bus", cmd_bus),
                       ("init-db", cmd_init_db), ("containers", cmd_containers), ("query", cmd_query),
                       ("reconciler", cmd_reconciler)):
        p = sub.add_parser(name)
        p.add_argument("prefix")
        p.set_defaults(func=func)
    p = sub.add_parser("stop")
    p.add_argument("prefix")
    p.add_argument("--only", choices=sorted(PROCESSES))
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("ini-env")
    p.add_argument("prefix")
    p.add_argument("file")
    p.add_argument("--set", action="append", metavar="VAR=VALUE", help="a variable of the environment")
    p.set_defaults(func=cmd_ini_env)
    p = sub.add_parser("api")
    p.add_argument("prefix")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_api)
    p = sub.add_parser("save-state")
    p.add_argument("prefix")
    p.add_argument("--example", type=int, default=0)
    p.add_argument("--name-prefix", default="decky")
    p.set_defaults(func=cmd_save_state)
    args = parser.parse_args()
    try:
        args.func(args)
    except (Failure, subprocess.CalledProcessError, OSError) as err:
        detail = getattr(err, "stderr", None)
        sys.stderr.write(f"host.py {args.command}: {err}\n{detail or ''}")
        sys.exit(1)


if __name__ == "__main__":
    main()
