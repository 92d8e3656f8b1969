#!/usr/bin/env python3
# Copied unchanged from ../shared/live/client.py (the project's live-Synapse
# harness), so that `npm test` runs without ../shared.
"""A small Matrix client-server API helper for tests against live homeservers.

Standard library only. One `Client` is one user on one homeserver; it keeps a
keep-alive HTTP connection per thread, retries once on a dropped connection and
waits out 429s. Typical use (with servers started by live.py):

    from client import Client
    alice = Client.for_user("hs1", "alice")          # registers or logs in
    room = alice.create_room(room_version="11")
    ids = alice.send_many(room, 1000)                # sequential, keep-alive
    bob = Client.for_user("hs2", "bob")
    bob.join(room, via=[alice.server_name])
    events = bob.paginate(room)                      # /messages backwards to the start

`python3 client.py bench --server hs1 -n 1000 [-c 4]` measures bulk sending.
"""
import hashlib
import hmac
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

# State (certs, configs, SQLite databases, logs) goes on tmpfs when there is one:
# SQLite fsyncs on every commit, and on tmpfs that is free (2x the send rate here).
STATE_DIR = os.environ.get("ROOMDAG_LIVE_DIR") or (
    "/dev/shm/roomdag-live" if os.access("/dev/shm", os.W_OK) else "/tmp/roomdag-live")


class MatrixError(Exception):
    def __init__(self, method, path, status, body):
        self.status, self.body = status, body
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{method} {path} -> {status} {body}")


def server_info(name, state_dir=None):
    """The info.json that `live.py start NAME` wrote."""
    with open(os.path.join(state_dir or STATE_DIR, name, "info.json")) as f:
        return json.load(f)


class Client:
    def __init__(self, base_url, token=None, *, cafile=None, timeout=120):
        u = urllib.parse.urlsplit(base_url)
        self.base_url, self.token, self.timeout = base_url.rstrip("/"), token, timeout
        self._https, self._netloc = u.scheme == "https", u.netloc
        self._ssl = ssl.create_default_context(cafile=cafile) if self._https else None
        self._local = threading.local()
        self.user_id = self.device_id = self.server_name = None

    # ---- construction -------------------------------------------------------
    @classmethod
    def for_user(cls, server, username, *, password=None, admin=False, state_dir=None):
        """Register USERNAME on live server SERVER (a name given to live.py), or
        log in if it already exists. Returns a logged-in Client."""
        info = server_info(server, state_dir)
        c = cls(info["client_url"])
        c.register(info["shared_secret"], username, password=password, admin=admin)
        c.server_name = info["server_name"]
        return c

    def register(self, shared_secret, username, *, password=None, admin=False):
        """Shared-secret registration (/_synapse/admin/v1/register); logs in
        with the password instead when the user already exists."""
        password = password or f"{username}-password"
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), username.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        body = {"nonce": nonce, "username": username, "password": password,
                "admin": admin, "mac": mac.hexdigest()}
        try:
            r = self.request("POST", "/_synapse/admin/v1/register", body)
        except MatrixError as e:
            if e.errcode != "M_USER_IN_USE":
                raise
            r = self.request("POST", "/_matrix/client/v3/login", {
                "type": "m.login.password", "password": password,
                "identifier": {"type": "m.id.user", "user": username}})
        self.token, self.user_id, self.device_id = r["access_token"], r["user_id"], r["device_id"]
        self.server_name = self.user_id.split(":", 1)[1]
        return r

    # ---- HTTP -----------------------------------------------------------------
    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._https:
                c = http.client.HTTPSConnection(self._netloc, timeout=self.timeout, context=self._ssl)
            else:
                c = http.client.HTTPConnection(self._netloc, timeout=self.timeout)
            self._local.conn = c
        return c

    def _drop(self):
        c, self._local.conn = getattr(self._local, "conn", None), None
        if c is not None:
            c.close()

    def request(self, method, path, body=None, query=None):
        """One API call; returns the decoded JSON body or raises MatrixError."""
        if query:
            path += "?" + urllib.parse.urlencode(query, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(20):
            try:
                conn = self._conn()
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.BadStatusLine, ConnectionError):
                # the server closed our keep-alive connection: retry once on a new one
                self._drop()
                if attempt:
                    raise
                continue
            except Exception:  # e.g. a timeout: the connection is unusable now
                self._drop()
                raise
            try:
                out = json.loads(raw) if raw else {}
            except ValueError:
                out = {"raw": raw.decode(errors="replace")}
            if resp.status == 429:  # rate limited despite our config: wait and retry
                time.sleep(out.get("retry_after_ms", 500) / 1000)
                continue
            if resp.status >= 400:
                raise MatrixError(method, path, resp.status, out)
            return out
        raise MatrixError(method, path, 429, out)

    @staticmethod
    def _q(s):
        return urllib.parse.quote(s, safe="")

    # ---- rooms ----------------------------------------------------------------
    def create_room(self, room_version="11", preset="public_chat", *, name=None,
                    topic=None, invite=(), initial_state=(), power_level_content_override=None,
                    **extra):
        body = {"room_version": str(room_version), "preset": preset, **extra}
        if name:
            body["name"] = name
        if topic:
            body["topic"] = topic
        if invite:
            body["invite"] = list(invite)
        if initial_state:
            body["initial_state"] = list(initial_state)
        if power_level_content_override:
            body["power_level_content_override"] = power_level_content_override
        return self.request("POST", "/_matrix/client/v3/createRoom", body)["room_id"]

    def _txn(self):
        n = getattr(self._local, "txn", 0) + 1
        self._local.txn = n
        return f"{os.getpid()}.{threading.get_ident()}.{time.time_ns()}.{n}"

    def send(self, room_id, body=None, *, event_type="m.room.message", content=None, txn_id=None):
        """Send one event (default an m.text message with BODY); returns its event ID."""
        content = content if content is not None else {"msgtype": "m.text", "body": body}
        path = (f"/_matrix/client/v3/rooms/{self._q(room_id)}/send/"
                f"{self._q(event_type)}/{self._q(txn_id or self._txn())}")
        return self.request("PUT", path, content)["event_id"]

    def send_many(self, room_id, messages, *, concurrency=1):
        """Send MESSAGES (an int n, or a list of bodies/contents). Returns event
        IDs in send order. concurrency=1 keeps the DAG linear; more threads are
        faster but let Synapse fork the DAG (several events on the same prev)."""
        if isinstance(messages, int):
            messages = [f"message {i}" for i in range(messages)]

        def one(m):
            return self.send(room_id, content=m) if isinstance(m, dict) else self.send(room_id, m)

        if concurrency <= 1:
            return [one(m) for m in messages]
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, messages))

    def put_state(self, room_id, event_type, content, state_key=""):
        path = (f"/_matrix/client/v3/rooms/{self._q(room_id)}/state/"
                f"{self._q(event_type)}/{self._q(state_key)}")
        return self.request("PUT", path, content)["event_id"]

    def get_state(self, room_id):
        """The room's current state: a list of state events."""
        return self.request("GET", f"/_matrix/client/v3/rooms/{self._q(room_id)}/state")

    def get_state_event(self, room_id, event_type, state_key=""):
        return self.request("GET", f"/_matrix/client/v3/rooms/{self._q(room_id)}/state/"
                                   f"{self._q(event_type)}/{self._q(state_key)}")

    def invite(self, room_id, user_id):
        return self.request("POST", f"/_matrix/client/v3/rooms/{self._q(room_id)}/invite",
                            {"user_id": user_id})

    def join(self, room_id_or_alias, via=()):
        """Join, through the servers in VIA (sent as both server_name and via)."""
        via = [via] if isinstance(via, str) else list(via)
        q = {"server_name": via, "via": via} if via else None
        return self.request("POST", f"/_matrix/client/v3/join/{self._q(room_id_or_alias)}",
                            {}, q)["room_id"]

    def leave(self, room_id):
        return self.request("POST", f"/_matrix/client/v3/rooms/{self._q(room_id)}/leave", {})

    def event(self, room_id, event_id):
        return self.request("GET", f"/_matrix/client/v3/rooms/{self._q(room_id)}/event/"
                                   f"{self._q(event_id)}")

    def messages(self, room_id, from_=None, *, dir="b", limit=100, filter=None):
        """One /messages page (dict with chunk, start, end?)."""
        q = {"dir": dir, "limit": limit}
        if from_:
            q["from"] = from_
        if filter:
            q["filter"] = json.dumps(filter)
        return self.request("GET", f"/_matrix/client/v3/rooms/{self._q(room_id)}/messages",
                            None, q)

    def paginate(self, room_id, *, limit=100, max_pages=100000, stats=None):
        """Page /messages backwards from the newest event until the server says
        there is no more (no `end`). Returns all events oldest first. STATS (a
        dict) gets 'pages' and 'empty_pages'."""
        events, token, pages, empty = [], None, 0, 0
        while pages < max_pages:
            r = self.messages(room_id, token, dir="b", limit=limit)
            pages += 1
            events.extend(r.get("chunk", []))
            empty += not r.get("chunk")
            if not r.get("end") or r["end"] == token:
                break
            token = r["end"]
        if stats is not None:
            stats.update(pages=pages, empty_pages=empty)
        return events[::-1]

    def timestamp_to_event(self, room_id, ts, dir="f"):
        """Client /timestamp_to_event: {event_id, origin_server_ts}."""
        return self.request("GET", f"/_matrix/client/v1/rooms/{self._q(room_id)}/timestamp_to_event",
                            None, {"ts": int(ts), "dir": dir})

    def joined_members(self, room_id):
        return self.request("GET", f"/_matrix/client/v3/rooms/{self._q(room_id)}/joined_members")["joined"]


def _bench(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="measure bulk message sending on a live server")
    p.add_argument("cmd", choices=["bench"])
    p.add_argument("--server", default="hs1")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("--room-version", default="11")
    a = p.parse_args(argv)
    c = Client.for_user(a.server, "bench")
    room = c.create_room(room_version=a.room_version)
    t = time.monotonic()
    ids = c.send_many(room, a.n, concurrency=a.concurrency)
    dt = time.monotonic() - t
    print(json.dumps({"room_id": room, "sent": len(ids), "concurrency": a.concurrency,
                      "seconds": round(dt, 2), "per_second": round(len(ids) / dt, 1)}))


if __name__ == "__main__":
    _bench()
