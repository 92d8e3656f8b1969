#!/usr/bin/env python3
# Copied from ../shared/live/live.py (the project's live-Synapse harness), so that
# `npm test` runs without ../shared. Changes: Synapse's interpreter comes only from
# $ROOMDAG_SYNAPSE_PYTHON (scripts/test.mjs finds or installs one).
"""live.py: run real Synapse homeservers on loopback that federate over TLS.

  live.py start NAME PORT [--http-port P] [--ttl S] [--fresh]
        Start homeserver NAME with server name HOST:PORT (HOST = NAME.test unless
        NAME has a dot). PORT is its TLS listener (federation + client); the plain
        HTTP listener (client + federation + metrics) is on --http-port
        (default PORT+1000). Waits until both answer. Idempotent.
  live.py stop NAME... | stop --all      SIGTERM the processes we started, by PID
  live.py status                         JSON for every server in the state dir
  live.py register NAME USER [--admin]   JSON {user_id, access_token, device_id}
  live.py hosts HOST...                  map HOST to 127.0.0.1 in /etc/hosts

State lives in --dir / $ROOMDAG_LIVE_DIR (default /dev/shm/roomdag-live, tmpfs, as
SQLite commits are twice as fast there; /tmp/roomdag-live without /dev/shm): the CA in
ca/, certificates in certs/, and NAME/ with homeserver.yaml, homeserver.db,
homeserver.log, access.log (one line per HTTP request), stdout.log, info.json.
Synapse runs under `timeout TTL` so it stops by itself (default 7200 s).
Synapse comes from $ROOMDAG_SYNAPSE_PYTHON (a Python that imports synapse).
"""
import argparse
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import base64

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import client  # noqa: E402

def synapse_python():
    py = os.environ.get("ROOMDAG_SYNAPSE_PYTHON")
    if not py or not os.path.exists(py):
        raise RuntimeError("live.py: set ROOMDAG_SYNAPSE_PYTHON to a Python that imports synapse "
                           "(scripts/test.mjs does: ROOMDAG_TEST_ONLY=live npm test)")
    return py


def ensure_hosts(*hosts):
    """Map each HOST to 127.0.0.1 in /etc/hosts (appends only what is missing)."""
    with open("/etc/hosts") as f:
        known = {w for line in f if line.split() and line.split()[0] == "127.0.0.1"
                 for w in line.split()[1:]}
    missing = [h for h in hosts if h not in known and h != "localhost"]
    if missing:
        try:
            with open("/etc/hosts", "a") as f:
                f.write("127.0.0.1 " + " ".join(missing) + "\n")
        except PermissionError:
            raise RuntimeError(f"add '127.0.0.1 {' '.join(missing)}' to /etc/hosts (needs root)")


def ensure_certs(state, *hosts):
    subprocess.run(["bash", os.path.join(HERE, "ca.sh"), state, *hosts], check=True)


# Rate limits raised as in Complement's Synapse config, so tests never wait.
FAST = {"per_second": 9999, "burst_count": 9999}
RATE_LIMITS = {
    "rc_message": FAST, "rc_registration": FAST, "rc_admin_redaction": FAST,
    "rc_login": {"address": FAST, "account": FAST, "failed_attempts": FAST},
    "rc_joins": {"local": FAST, "remote": FAST}, "rc_joins_per_room": FAST,
    "rc_invites": {"per_room": FAST, "per_user": FAST, "per_issuer": FAST},
    "rc_3pid_validation": FAST, "rc_presence": {"per_user": FAST},
    "rc_delayed_event_mgmt": FAST,
    # inbound federation: no sleeping, no rejecting, more requests at once
    "rc_federation": {"window_size": 1000, "sleep_limit": 9999, "sleep_delay": 1,
                      "reject_limit": 99999, "concurrent": 100},
    "federation_rr_transactions_per_room_per_second": 9999,
}


def write_config(state, name, host, port, http_port):
    """homeserver.yaml, log config and signing key for one server (JSON is YAML)."""
    d = os.path.join(state, name)
    os.makedirs(d, exist_ok=True)
    key = os.path.join(d, "signing.key")
    if not os.path.exists(key):
        # Synapse's key file format: "ed25519 KEY_ID SEED", SEED = unpadded base64
        # of 32 random bytes (any 32 bytes are a valid ed25519 seed).
        seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
        with open(key, "w") as f:
            f.write(f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
    secret_file = os.path.join(d, "shared_secret")
    if not os.path.exists(secret_file):
        with open(secret_file, "w") as f:
            f.write(secrets.token_hex(16))
    secret = open(secret_file).read().strip()
    cfg = {
        "server_name": f"{host}:{port}",
        "public_baseurl": f"http://127.0.0.1:{http_port}/",
        "pid_file": os.path.join(d, "homeserver.pid"),
        "listeners": [
            # what other servers use: TLS, and the port is part of the server name
            {"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
             "resources": [{"names": ["client", "federation"], "compress": False}]},
            # plain HTTP for test clients (and for a peer that cannot do our TLS)
            {"port": http_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
             "resources": [{"names": ["client", "federation", "metrics"], "compress": False}]},
        ],
        "tls_certificate_path": os.path.join(state, "certs", host + ".crt"),
        "tls_private_key_path": os.path.join(state, "certs", host + ".key"),
        # Outbound federation (always HTTPS in Synapse): trust only our CA (else
        # "certificate verify failed"), and allow loopback targets: 127.0.0.0/8 is
        # in the default ip_range_blacklist (else "DNSLookupError ... hs1.test").
        "federation_custom_ca_list": [os.path.join(state, "ca", "ca.crt")],
        "ip_range_whitelist": ["127.0.0.1"],
        # Fetch each peer's signing keys from the peer itself. The default asks
        # matrix.org first: an outside address, and a 4 s delay per join here.
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "database": {"name": "sqlite3", "args": {"database": os.path.join(d, "homeserver.db")}},
        "media_store_path": os.path.join(d, "media_store"),
        "signing_key_path": key,
        "log_config": os.path.join(d, "log.yaml"),
        "registration_shared_secret": secret,
        "macaroon_secret_key": secret + "-macaroon",
        "form_secret": secret + "-form",
        "report_stats": False,
        "enable_metrics": True,
        "bcrypt_rounds": 4,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        # A peer that was down is retried within seconds, not after Synapse's
        # default 10 minutes of backoff (tests stop and restart servers).
        "federation": {"destination_min_retry_interval": "2s", "destination_retry_multiplier": 1,
                       "destination_max_retry_interval": "5s", "max_long_retry_delay": "5s"},
        **RATE_LIMITS,
    }
    with open(os.path.join(d, "homeserver.yaml"), "w") as f:
        json.dump(cfg, f, indent=1)
    log = {
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(lineno)d - "
                                             "%(levelname)s - %(request)s - %(message)s"}},
        "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter", "request": ""}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "formatter": "precise", "filters": ["context"],
                     "filename": os.path.join(d, "homeserver.log")},
            "access": {"class": "logging.FileHandler", "formatter": "precise", "filters": ["context"],
                       "filename": os.path.join(d, "access.log")},
        },
        # synapse.access.* logs one "Processed request" line per HTTP request
        "loggers": {"synapse.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
                    "synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": os.environ.get("ROOMDAG_LIVE_LOG_LEVEL", "INFO"), "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
    with open(os.path.join(d, "log.yaml"), "w") as f:
        json.dump(log, f, indent=1)
    info = {"name": name, "host": host, "server_name": cfg["server_name"], "port": port,
            "http_port": http_port, "client_url": f"http://127.0.0.1:{http_port}",
            "federation_url": f"https://{host}:{port}", "shared_secret": secret,
            "ca": cfg["federation_custom_ca_list"][0], "dir": d,
            "log": os.path.join(d, "homeserver.log"), "access_log": os.path.join(d, "access.log")}
    return info


def _pid(state, name):
    """The PID we recorded for NAME, if that process still runs our config."""
    try:
        pid = int(open(os.path.join(state, name, "live.pid")).read())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if os.path.join(state, name, "homeserver.yaml") in cmdline else None


def alive(pid):
    """True if PID runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, TypeError):
        return False


def _get(url, cafile=None):
    ctx = ssl.create_default_context(cafile=cafile) if url.startswith("https") else None
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        return json.load(r)


def start(name, port, http_port=None, ttl=7200, fresh=False, state=client.STATE_DIR, wait=120):
    """Start (or find running) server NAME; returns its info dict."""
    host = name if "." in name else f"{name}.test"
    http_port = http_port or port + 1000
    d = os.path.join(state, name)
    if fresh:
        stop(name, state)
        subprocess.run(["rm", "-rf", d], check=True)
    pid = _pid(state, name)
    if alive(pid):
        return dict(client.server_info(name, state), pid=pid, already_running=True)
    for p in (port, http_port):  # else the readiness check could be answered by another process
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                raise RuntimeError(f"live.py: port {p} is already in use")
    ensure_hosts(host)
    ensure_certs(state, host)
    info = write_config(state, name, host, port, http_port)
    cmd = [synapse_python(), "-m", "synapse.app.homeserver", "-c", os.path.join(d, "homeserver.yaml")]
    if ttl:  # `timeout` forwards our SIGTERM to Synapse, and ends it after TTL seconds
        cmd = ["timeout", "-k", "10", str(ttl)] + cmd
    with open(os.path.join(d, "stdout.log"), "ab") as out:
        proc = subprocess.Popen(cmd, cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    with open(os.path.join(d, "live.pid"), "w") as f:
        f.write(str(proc.pid))
    info["pid"] = proc.pid
    with open(os.path.join(d, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    t0 = time.monotonic()
    while True:  # ready once both listeners answer (the TLS one checked against our CA)
        if proc.poll() is not None:
            tail = open(os.path.join(d, "stdout.log"), errors="replace").read()[-3000:]
            raise RuntimeError(f"live.py: {name} exited with {proc.returncode}:\n{tail}")
        try:
            _get(f"{info['client_url']}/_matrix/client/versions")
            _get(f"{info['federation_url']}/_matrix/key/v2/server", info["ca"])
            break
        except OSError as e:
            if "CERTIFICATE_VERIFY_FAILED" in str(e) or time.monotonic() - t0 > wait:
                stop(name, state)
                raise RuntimeError(f"live.py: {name} not ready: {e}; see {d}/homeserver.log")
            time.sleep(0.3)
    info["startup_seconds"] = round(time.monotonic() - t0, 1)
    return info


def stop(name, state=client.STATE_DIR, wait=30):
    """SIGTERM the process we started for NAME (by its recorded PID); SIGKILL after WAIT s."""
    pid = _pid(state, name)
    if not alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    t0 = time.monotonic()
    while alive(pid) and time.monotonic() - t0 < wait:
        time.sleep(0.2)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)  # the group of its own session, started by us
    if os.path.exists(os.path.join(state, name, "live.pid")):
        os.unlink(os.path.join(state, name, "live.pid"))
    return True


def names(state):
    return sorted(n for n in os.listdir(state) if os.path.exists(os.path.join(state, n, "info.json"))) \
        if os.path.isdir(state) else []


def rss_mib(pid):
    """Resident memory (MiB) of Synapse: PID's child under `timeout`, else PID."""
    kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
    for line in open(f"/proc/{kids[0] if kids else pid}/status"):
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=client.STATE_DIR, help="state dir (default %(default)s)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("name")
    s.add_argument("port", type=int)
    s.add_argument("--http-port", type=int)
    s.add_argument("--ttl", type=int, default=int(os.environ.get("ROOMDAG_LIVE_TTL", 7200)),
                   help="stop by itself after this many seconds (0: never)")
    s.add_argument("--fresh", action="store_true", help="wipe this server's data first")
    s = sub.add_parser("stop")
    s.add_argument("names", nargs="*")
    s.add_argument("--all", action="store_true")
    sub.add_parser("status")
    s = sub.add_parser("register")
    s.add_argument("name")
    s.add_argument("user")
    s.add_argument("--password")
    s.add_argument("--admin", action="store_true")
    s = sub.add_parser("hosts")
    s.add_argument("hosts", nargs="+")
    a = p.parse_args(argv)
    os.makedirs(a.dir, exist_ok=True)
    if a.cmd == "start":
        print(json.dumps(start(a.name, a.port, a.http_port, a.ttl, a.fresh, a.dir), indent=1))
    elif a.cmd == "stop":
        for n in (names(a.dir) if a.all else a.names):
            print(f"{n}: {'stopped' if stop(n, a.dir) else 'not running'}")
    elif a.cmd == "status":
        out = []
        for n in names(a.dir):
            pid = _pid(a.dir, n)
            info = client.server_info(n, a.dir)
            out.append({"name": n, "server_name": info["server_name"], "client_url": info["client_url"],
                        "running": alive(pid), "pid": pid,
                        "rss_mib": rss_mib(pid) if alive(pid) else None})
        print(json.dumps(out, indent=1))
    elif a.cmd == "register":
        c = client.Client.for_user(a.name, a.user, password=a.password, admin=a.admin, state_dir=a.dir)
        print(json.dumps({"user_id": c.user_id, "access_token": c.token, "device_id": c.device_id,
                          "client_url": c.base_url}))
    elif a.cmd == "hosts":
        ensure_hosts(*a.hosts)


if __name__ == "__main__":
    main()
