# Sourced by scripts/path-unit and scripts/reaction: real systemd units where
# systemd is not PID 1 (a container, CI).
#
# systemd's user manager (`systemd --user`, the same binary and the same path
# unit code as PID 1) runs anywhere we are root, given two things:
#   - it refuses to start unless /run/systemd/system exists ("booted with
#     systemd"): in a private mount namespace, a tmpfs over /run/systemd gives
#     it that directory without touching the host's /run;
#   - its own XDG_RUNTIME_DIR and XDG_CONFIG_HOME (units in
#     $XDG_CONFIG_HOME/systemd/user), so it shares nothing with anyone.
# The units are loaded from those files as they are; only the service needs a
# drop-in (harness_service_dropin), for what a user manager cannot apply.

# user_manager_start DIR: starts a user manager whose files live under DIR,
# exports XDG_RUNTIME_DIR and XDG_CONFIG_HOME for systemctl --user, sets
# USER_MANAGER_PID. Returns 1 (with the reason on stderr) when it cannot run.
user_manager_start() {
  local dir=$1
  [ "$(id -u)" = 0 ] || { echo "a private user manager needs root (unshare --mount)" >&2; return 1; }
  [ -x /lib/systemd/systemd ] || { echo "no /lib/systemd/systemd" >&2; return 1; }
  mkdir -p "$dir/runtime"
  chmod 700 "$dir/runtime"
  mkdir -p "$dir/config/systemd/user"
  export XDG_RUNTIME_DIR=$dir/runtime XDG_CONFIG_HOME=$dir/config
  # setsid and unshare exec in place: $! is systemd's own PID.
  setsid unshare --mount --propagation private sh -c \
    'mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && exec /lib/systemd/systemd --user' \
    >"$dir/manager.log" 2>&1 &
  USER_MANAGER_PID=$!
  local state
  for _ in $(seq 1 100); do
    # Not is-system-running: it asks over D-Bus, which this manager lacks.
    state=$(systemctl --user show -p SystemState --value 2>/dev/null || true)
    case $state in running | degraded) return 0 ;; esac
    kill -0 "$USER_MANAGER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "the user manager did not come up (state: ${state:-none}; log: $dir/manager.log)" >&2
  user_manager_stop
  return 1
}

user_manager_stop() {
  [ -n "${USER_MANAGER_PID:-}" ] || return 0
  kill "$USER_MANAGER_PID" 2>/dev/null || true
  wait "$USER_MANAGER_PID" 2>/dev/null || true
  USER_MANAGER_PID=
}

# harness_service_dropin BINARY STATE_FILE DB [ARGS...]: the drop-in that runs
# the packaged service's own command line (its arguments as they are, with
# BINARY for /usr/bin/decnet-reconcile and ARGS appended) on our files, inside
# the unit's own sandbox but for what a user manager cannot set up here:
#   - User=, Group=, SupplementaryGroups=: a user manager runs as its user;
#   - PrivateTmp=, ProtectHome=, ProtectKernelTunables=: each fails with
#     226/NAMESPACE in this container (the rest of the sandbox works: a read-only
#     file system but for ReadWritePaths=, private /dev, the system-call filter);
#   - ReadWritePaths=: the DB's directory instead of DECNET's install dir and
#     node-exporter's, and the metrics file there too.
# tests/it/systemd.rs proves the command line under the whole sandbox's rules.
harness_service_dropin() {
  local binary=$1 state_file=$2 db=$3
  shift 3
  local unit args
  unit="$(dirname "${BASH_SOURCE[0]}")/../systemd/decnet-reconcile.service"
  args=$(sed -n 's#^ExecStart=/usr/bin/decnet-reconcile ##p' "$unit")
  [ -n "$args" ] || { echo "no ExecStart=/usr/bin/decnet-reconcile in $unit" >&2; return 1; }
  cat <<EOF
[Service]
User=
Group=
SupplementaryGroups=
PrivateTmp=no
ProtectHome=no
ProtectKernelTunables=no
ReadWritePaths=
ReadWritePaths=$(dirname "$db")
Environment=DECNET_STATE_FILE=$state_file DECNET_DB_PATH=$db DECNET_RECONCILE_METRICS_FILE=$(dirname "$db")/decnet-reconcile.prom
ExecStart=
ExecStart=$binary $args $*
EOF
}

# decnet_db PYTHON DB: an SQLite DB as DECNET leaves it (SPEC §9: the Alembic
# baseline's fleet_deckies and alembic_version at 4a914b1d62a0), made with
# DECNET's own Python.
decnet_db() {
  "$1" - "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("""
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
INSERT INTO alembic_version VALUES ('4a914b1d62a0');
CREATE TABLE fleet_deckies (
	host_uuid VARCHAR NOT NULL,
	name VARCHAR NOT NULL,
	services TEXT NOT NULL,
	decky_config TEXT,
	decky_ip VARCHAR,
	state VARCHAR NOT NULL,
	last_error TEXT,
	compose_hash VARCHAR,
	last_seen DATETIME,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (host_uuid, name)
);
CREATE INDEX ix_fleet_deckies_host_uuid ON fleet_deckies (host_uuid);
CREATE INDEX ix_fleet_deckies_state ON fleet_deckies (state);
""")
db.commit()
PY
}

# decnet_writer FILE: writes the Python program that changes DECNET's state
# file the way DECNET does, with DECNET's own save_state() and clear_state()
# (decnet.config) pointed at our file instead of DECNET's root. Run it with
# DECNET's Python: `PYTHON FILE STATE_FILE DB COMMAND ARGS...`; see its usage.
decnet_writer() {
  cat >"$1" <<'PY'
"""Changes DECNET's state file with DECNET's own code, and watches fleet_deckies.

usage: writer.py STATE_FILE DB deploy NAME...      save_state with these deckies
       writer.py STATE_FILE DB clear               clear_state (teardown)
       writer.py STATE_FILE DB burst N GAP_MS      N save_state, one more decky each
       writer.py STATE_FILE DB churn SECS GAP_MS   save_state for SECS, flipping between two fleets
       writer.py STATE_FILE DB half NAME...        half the file, a pass, then the rest
       writer.py STATE_FILE DB during A B          save_state [A]; while its pass waits on
                                                   the DB lock, save_state [A, B]
       writer.py STATE_FILE DB rows                the rows' names, one a line
       writer.py STATE_FILE DB reaction RUNS GAP_S TIMEOUT_S
"""
import json, os, sqlite3, statistics, subprocess, sys, time
from pathlib import Path

# DECNET logs to ./decnet.system.log unless told otherwise.
os.environ.setdefault("DECNET_SYSTEM_LOGS", "/dev/null")
import decnet.config
from decnet.models import DecnetConfig, DeckyConfig

state_file, db = Path(sys.argv[1]), sys.argv[2]
decnet.config.STATE_FILE = state_file  # DECNET's root, moved to ours
COMPOSE = Path("/var/lib/decnet/docker-compose.yml")


def config(names):
    deckies = [
        DeckyConfig(name=n, ip=f"10.0.{i // 250}.{i % 250 + 2}", services=["ssh"],
                    distro="debian", base_image="debian:bookworm-slim", hostname=f"host-{i:03}")
        for i, n in enumerate(names)
    ]
    return DecnetConfig(mode="unihost", interface="eth0", subnet="10.0.0.0/16",
                        gateway="10.0.0.1", deckies=deckies)


def rows():
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {r[0] for r in con.execute("SELECT name FROM fleet_deckies")}
    finally:
        con.close()


def wait_for_row(name, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in rows():
            return True
        time.sleep(0.002)
    return False


command, args = sys.argv[3], sys.argv[4:]
if command == "deploy":
    decnet.config.save_state(config(args), COMPOSE)
elif command == "clear":
    decnet.config.clear_state()
elif command == "burst":
    n, gap = int(args[0]), float(args[1]) / 1000
    names = []
    for i in range(n):
        names.append(f"burst-{i:03}")
        decnet.config.save_state(config(names), COMPOSE)
        time.sleep(gap)
elif command == "churn":
    end, gap, i = time.monotonic() + float(args[0]), float(args[1]) / 1000, 0
    while time.monotonic() < end:
        decnet.config.save_state(config(["churn-0", "churn-1"][: 1 + i % 2]), COMPOSE)
        time.sleep(gap)
        i += 1
elif command == "during":
    lock = sqlite3.connect(db, timeout=5)
    lock.execute("BEGIN IMMEDIATE")  # the pass reads the file, then waits here
    decnet.config.save_state(config(args[:1]), COMPOSE)
    time.sleep(1.5)
    decnet.config.save_state(config(args), COMPOSE)
    time.sleep(0.5)
    lock.rollback()
elif command == "half":
    text = json.dumps({"config": config(args).model_dump(), "compose_path": str(COMPOSE)}, indent=2)
    with open(state_file, "w") as f:  # as write_text opens it: truncated, in place
        f.write(text[: len(text) // 2])
        f.flush()
        # A pass that reads now (the timer's, say) finds half a file.
        started = subprocess.run(["systemctl", "--user", "start", "decnet-reconcile.service"],
                                 capture_output=True, text=True)
        print(f"pass on the half-written file: {'failed' if started.returncode else 'succeeded'}; "
              f"rows then: {sorted(rows())}")
        f.write(text[len(text) // 2:])
elif command == "rows":
    print("\n".join(sorted(rows())))
elif command == "reaction":
    runs, gap, timeout = int(args[0]), float(args[1]), float(args[2])
    names, figures, missed = [], [], 0
    for i in range(runs):
        names.append(f"rx-{i:03}")
        start = time.perf_counter()
        decnet.config.save_state(config(names), COMPOSE)
        if wait_for_row(names[-1], timeout):
            figures.append(time.perf_counter() - start)
        else:
            missed += 1
        time.sleep(gap)  # the pass ends (publishing, exit) before the next write
    ms = sorted(f * 1000 for f in figures)
    print("reaction_ms " + " ".join(f"{m:.1f}" for m in ms))
    if ms:
        print(f"median_ms {statistics.median(ms):.1f}")
        print(f"max_ms {ms[-1]:.1f}")
    print(f"missed {missed}")
else:
    sys.exit(__doc__)
PY
}
