# DECNET's own code on the other side of tests/it/decnet_bus.rs, run with the
# python of the DECNET virtualenv that scripts/services installs
# (decnet==1.0.0 from PyPI). Nothing here imitates DECNET: every object that
# serves, subscribes, aggregates heartbeats or reads the database is DECNET's.
#
#   driver.py hub SOCKET    DECNET's bus server (bus_worker) on SOCKET, and on it a
#                           subscriber made with DECNET's UnixSocketBus and DECNET's
#                           WorkerRegistry (fed by its own system.*.health
#                           subscription). Prints one JSON line per event received,
#                           {"pattern": …, "event": Event.to_dict()}, after a first
#                           {"ready": true}; answers a "snapshot" line on stdin with
#                           {"reconciler": WorkerStatus}, and a "barrier N" line with
#                           {"barrier": N} once every subscription has heard the
#                           barrier N published after it (so every event published
#                           before the line came is printed before the answer);
#                           exits when stdin closes.
#   driver.py read-db PATH  DECNET's SQLite repository's list_fleet_deckies(), each
#                           row's decky_config loaded into DECNET's DeckyConfig, as
#                           one JSON list.
import asyncio
import json
import os
import pathlib
import sys
import time

# DECNET refuses to import without these; their values do not matter here.
os.environ.setdefault("DECNET_JWT_SECRET", "test-only-placeholder-secret-0123456789")
os.environ.setdefault("DECNET_ADMIN_PASSWORD", "test-only-placeholder")
os.environ.setdefault("DECNET_SYSTEM_LOGS", "/dev/null")

# What the tests watch: the tool's channel has three tokens, so `decky.*`
# (one token after `decky`) must hear nothing, as the README says; `>` hears
# everything on one subscription, so it shows the order events came in (the
# heartbeat included).
PATTERNS = ("decky.*.state", "decky.>", "decky.*", ">")
# A barrier is published on both: between them every pattern hears it.
BARRIER_TOPICS = ("decky.barrier:end.state", "decky.barrier")
# The bus server's own heartbeat, which `>` would otherwise show every 10 s.
BUS_HEALTH = "system.bus.health"
PROBE_TOPIC = "decky.probe:ready.state"


def emit(document):
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


async def hub(socket_path):
    from decnet.bus.unix_client import UnixSocketBus
    from decnet.bus.worker import bus_worker
    from decnet.web.worker_registry import WorkerRegistry

    server = asyncio.create_task(bus_worker(socket_path, group=None))
    deadline = time.monotonic() + 20
    while not pathlib.Path(socket_path).is_socket():
        if server.done() or time.monotonic() > deadline:
            raise SystemExit(f"bus_worker did not listen on {socket_path}")
        await asyncio.sleep(0.02)

    bus = UnixSocketBus(socket_path, client_name="test-subscriber")
    await bus.connect()
    registry = WorkerRegistry()
    await registry.start(bus)
    probes_seen = set()
    barriers_heard = {}

    async def listen(pattern):
        async with bus.subscribe(pattern) as subscription:
            async for event in subscription:
                number = event.payload.get("barrier")
                if number is not None:
                    heard = barriers_heard.setdefault(number, set())
                    if len(heard) < len(PATTERNS):
                        heard.add(pattern)
                        if len(heard) == len(PATTERNS):
                            emit({"barrier": number})
                    continue
                if event.payload.get("probe"):
                    probes_seen.add((pattern, event.topic))
                    continue
                if event.topic == BUS_HEALTH:
                    continue
                emit({"pattern": pattern, "event": event.to_dict()})

    listeners = [asyncio.create_task(listen(p)) for p in PATTERNS]

    # Ready once the server has every subscription: a probe from a second
    # connection comes back on each, and the registry has recorded a (stale)
    # reconciler heartbeat that the tool's must then replace.
    prober = UnixSocketBus(socket_path, client_name="test-prober")
    await prober.connect()
    wanted = {
        ("decky.*.state", PROBE_TOPIC),
        ("decky.>", PROBE_TOPIC),
        (">", PROBE_TOPIC),
    }
    deadline = time.monotonic() + 20
    while not (wanted <= probes_seen and reconciler(registry)["status"] == "stale"):
        if time.monotonic() > deadline:
            raise SystemExit(f"subscriptions not live: {probes_seen}")
        await prober.publish(PROBE_TOPIC, {"probe": True}, event_type="state")
        await prober.publish(
            "system.reconciler.health",
            {"worker": "reconciler", "ts": 0.0, "probe": True},
            event_type="health",
        )
        await asyncio.sleep(0.05)
    emit({"ready": True})

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        words = line.split()
        if words == ["snapshot"]:
            emit({"reconciler": reconciler(registry)})
        elif len(words) == 2 and words[0] == "barrier":
            for topic in BARRIER_TOPICS:
                await prober.publish(topic, {"barrier": int(words[1])}, event_type="state")
    await prober.close()
    for listener in listeners:
        listener.cancel()
    await registry.stop()
    await bus.close()
    server.cancel()


def reconciler(registry):
    (status,) = [w for w in registry.snapshot() if w.name == "reconciler"]
    return status.model_dump(mode="json")


async def read_db(db_path):
    from decnet.models import DeckyConfig
    from decnet.web.db.factory import get_repository

    repo = get_repository(db_path=db_path)
    rows = await repo.list_fleet_deckies()
    for row in rows:
        if row.get("decky_config") is not None:
            DeckyConfig.model_validate(row["decky_config"])
    emit(rows)


def main():
    command, path = sys.argv[1:3]
    if command == "hub":
        asyncio.run(hub(path))
    elif command == "read-db":
        asyncio.run(read_db(path))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
