#!/usr/bin/env python3
"""cogs-dns: an example cogs micro-service (DNS A records and zones), Python standard library only.

It speaks the protocol of docs/service-protocol.md as the C++ kit (cogs/services/kit) does:
bearer token checked by SHA-256 digest, POST /v1/actions/{action} with Idempotency-Key, an
idempotency ledger with undo keys and tombstones, 202 + status polling for long actions,
X-Cogs-Deadline-Ms, the error object, /healthz, /metrics, /v1/inventory, the test routes
/v1/faults and /v1/ledger, and one JSON log line on stderr per action call. The ledger, the records
and the zones live in one SQLite database and every call is one transaction, so a crash never
leaves a record without its ledger entry. See README.md next to this file.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.server
import json
import logging
import math
import os
import random
import re
import signal
import socket
import sqlite3
import ssl
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

SERVICE = "dns"
PROCESS = "cogs-dns"
DEFAULT_BUDGET_S = 30.0  # when a caller sends no X-Cogs-Deadline-Ms
MAX_ACTION_LABELS = 64  # at most this many action label values in the metrics, the rest "other"
UNDO_SUFFIX = "/undo"
DO_SUFFIX = "/do"

log = logging.getLogger(SERVICE)

# ---------------------------------------------------------------------------------------------
# Errors: the cogs error codes and the status each one gets (cogs/base/result.cc, HttpStatus).

HTTP_STATUS = {
    "invalid_argument": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "already_exists": 409,
    "conflict": 409,
    "fenced": 409,
    "failed_precondition": 422,
    "resource_exhausted": 429,
    "cancelled": 499,
    "internal": 500,
    "unavailable": 503,
    "deadline_exceeded": 504,
}


def status_retryable(status: int) -> bool:
    """The status alone decides whether the caller retries (docs/service-protocol.md)."""
    return status >= 500 or status in (408, 429)


class Refusal(Exception):
    """An error answered with the protocol's error object."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def body(self) -> dict:
        return {"code": self.code, "message": self.message, "retryable": status_retryable(self.status)}


def invalid(field: str, what: str) -> Refusal:
    return Refusal("invalid_argument", f"{field}: {what}")


def dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def now_us() -> int:
    return time.time_ns() // 1000


# ---------------------------------------------------------------------------------------------
# Reading inputs, with the kit's messages (cogs/wire/input.cc): "FIELD: what is wrong".

ID_RULE = "must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'"
ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
LABEL_RULE = "must be a DNS label: 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
DOMAIN_RULE = ("must be a domain name: DNS labels (1-63 characters of a-z, 0-9 and '-', not starting "
               "or ending with '-') separated by '.', at most 253 characters")
IPV4_RULE = "must be a dotted IPv4 address (a.b.c.d, each 0-255)"
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def parse_ipv4(text: str) -> str | None:
    parts = text.split(".")
    if len(parts) != 4:
        return None
    for p in parts:
        # Decimal only, no sign, no leading zero (an ambiguous octal in some resolvers).
        if not p.isascii() or not p.isdigit() or len(p) > 3 or (len(p) > 1 and p[0] == "0") or int(p) > 255:
            return None
    return text


def parse_domain(text: str) -> str | None:
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253:
        return None
    if not all(LABEL_RE.fullmatch(label) for label in name.split(".")):
        return None
    return name


class Input:
    def __init__(self, obj: dict, path: str = ""):
        self.obj = obj
        self.path = path  # a nested object's full name: "input" gives "input.server_id: required"

    def name(self, field: str) -> str:
        return f"{self.path}.{field}" if self.path else field

    def known(self, fields) -> None:
        for k in self.obj:
            if k not in fields:
                raise invalid(self.name(k), "unknown field")

    def find(self, field):
        """The field's value; absent and null are the same (a template renders a missing value as null)."""
        return self.obj.get(field)

    def string(self, field: str, max_len: int = 255) -> str:
        v = self.find(field)
        if v is None or v == "":
            raise invalid(self.name(field), "required")
        return self._checked(field, v, max_len)

    def optional_string(self, field: str, max_len: int = 255) -> str | None:
        v = self.find(field)
        if v is None or v == "":
            return None  # "" also means "not given"
        return self._checked(field, v, max_len)

    def _checked(self, field: str, v, max_len: int) -> str:
        field = self.name(field)
        if not isinstance(v, str):
            raise invalid(field, "must be a string")
        if len(v) > max_len:
            raise invalid(field, f"longer than {max_len} characters")
        if CONTROL_RE.search(v):
            raise invalid(field, "must not contain control characters")
        return v

    def id(self, field: str) -> str:
        v = self.string(field, max_len=128)
        if not ID_RE.fullmatch(v) or v.startswith("."):
            raise invalid(self.name(field), ID_RULE)
        return v

    def optional_int(self, field: str, lo: int, hi: int) -> int | None:
        v = self.find(field)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                isinstance(v, float) and (not math.isfinite(v) or not v.is_integer())):
            raise invalid(self.name(field), "must be an integer")
        n = int(v)
        if n < lo or n > hi:
            raise invalid(self.name(field), f"must be between {lo} and {hi}")
        return n


# ---------------------------------------------------------------------------------------------
# The domain: what each action means. Each runs inside the call's transaction.


def record_id_for(key: str, attempt: int) -> str:
    """The record a do key names: derived from the key, so a re-send names the same record."""
    text = key if attempt == 1 else f"{key}#{attempt}"
    return "rec-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def act_register(db: sqlite3.Connection, inp: Input, ctx: "CallContext") -> dict:
    inp.known(("server_id", "name", "address", "zone"))
    server_id = inp.string("server_id")
    name_text = inp.string("name", max_len=63)
    name = name_text.lower()
    if not LABEL_RE.fullmatch(name):
        raise invalid("name", LABEL_RULE)
    address = parse_ipv4(inp.string("address", max_len=15))
    if address is None:
        raise invalid("address", IPV4_RULE)
    zone = ctx.default_zone
    zone_text = inp.optional_string("zone", max_len=254)
    if zone_text is not None:
        zone = parse_domain(zone_text)
        if zone is None:
            raise invalid("zone", DOMAIN_RULE)
    fqdn = f"{name}.{zone}"
    if len(fqdn) > 253:
        raise invalid("name", f"{fqdn} is longer than 253 characters")
    # The id is the key's; it exists already only if the key's ledger entry was pruned (a retry
    # days later, or --break-replays): the record is then made again under a further id.
    attempt = 1
    rid = record_id_for(ctx.key, attempt)
    while db.execute("SELECT 1 FROM records WHERE id = ?", (rid,)).fetchone():
        attempt += 1
        rid = record_id_for(ctx.key, attempt)
    db.execute("INSERT INTO records (id, name, zone, fqdn, address, server_id, created_us) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)", (rid, name, zone, fqdn, address, server_id, now_us()))
    return {"record_id": rid, "fqdn": fqdn, "address": address, "server_id": server_id}


def act_unregister(db: sqlite3.Connection, inp: Input, ctx: "CallContext") -> dict:
    if "input" in inp.obj:
        # The body the engine sends a compensation that has no input template:
        # {"input": <register's input>, "output": <its output, or null>}.
        inp.known(("input", "output"))
        nested = inp.find("input")
        if not isinstance(nested, dict):
            raise invalid("input", "must be an object")
        server_id = Input(nested, "input").string("server_id")  # its other fields were register's
    else:
        inp.known(("server_id",))
        server_id = inp.string("server_id")
    removed = db.execute("DELETE FROM records WHERE server_id = ?", (server_id,)).rowcount
    return {"removed": removed}


def zone_object(row) -> dict:
    return {"id": row[0], "name": row[1], "email": row[2], "ttl": row[3], "project_id": row[4]}


def act_create_zone(db: sqlite3.Connection, inp: Input, ctx: "CallContext") -> dict:
    inp.known(("id", "name", "email", "ttl", "project_id"))
    zid = inp.id("id")
    name = parse_domain(inp.string("name", max_len=254))
    if name is None:
        raise invalid("name", DOMAIN_RULE)
    email = inp.optional_string("email", max_len=254)
    if email is not None and not EMAIL_RE.fullmatch(email):
        raise invalid("email", "must be an address like hostmaster@example.org")
    if email is None:
        email = f"hostmaster@{name}"
    ttl = inp.optional_int("ttl", 60, 86400)
    if ttl is None:
        ttl = 3600
    project_id = inp.optional_string("project_id") or ""
    zone = {"id": zid, "name": name, "email": email, "ttl": ttl, "project_id": project_id}
    row = db.execute("SELECT id, name, email, ttl, project_id FROM zones WHERE id = ?", (zid,)).fetchone()
    if row is not None:
        if zone_object(row) == zone:
            return zone  # the same zone again: the same answer, nothing written
        raise Refusal("already_exists", f"id: zone {zid} exists with other content")
    other = db.execute("SELECT id FROM zones WHERE name = ?", (name,)).fetchone()
    if other is not None:
        raise Refusal("conflict", f"name: zone {name} exists as {other[0]}")
    db.execute("INSERT INTO zones (id, name, email, ttl, project_id) VALUES (?, ?, ?, ?, ?)",
               (zid, name, email, ttl, project_id))
    return zone


def act_delete_zone(db: sqlite3.Connection, inp: Input, ctx: "CallContext") -> dict:
    inp.known(("id",))
    zid = inp.id("id")
    deleted = db.execute("DELETE FROM zones WHERE id = ?", (zid,)).rowcount > 0
    return {"deleted": deleted}


ACTIONS = {
    "register": act_register,
    "unregister": act_unregister,
    "create_zone": act_create_zone,
    "delete_zone": act_delete_zone,
}


class CallContext:
    def __init__(self, key: str, default_zone: str):
        self.key = key
        self.default_zone = default_zone


# ---------------------------------------------------------------------------------------------
# Faults (test routes): the settings of docs/service-protocol.md, "Test controls".

FAULT_FIELDS = ("error_rate", "permanent_rate", "hang_rate", "lost_reply_rate", "latency_ms",
                "accept_duration_ms", "fail_actions", "long_actions", "hang_all")
DAY_MS = 24 * 3600 * 1000


def whole(x):
    return int(x) if isinstance(x, float) and x.is_integer() else x


class Faults:
    def __init__(self):
        self.error_rate = 0.0
        self.permanent_rate = 0.0
        self.hang_rate = 0.0
        self.lost_reply_rate = 0.0
        self.latency_ms = 0.0
        self.fail_actions: list[str] = []
        self.long_actions: list[str] = []
        self.accept_duration_ms = 100.0
        self.hang_all = False

    def to_json(self) -> dict:
        return {"error_rate": whole(self.error_rate), "permanent_rate": whole(self.permanent_rate),
                "hang_rate": whole(self.hang_rate), "lost_reply_rate": whole(self.lost_reply_rate),
                "latency_ms": whole(self.latency_ms), "fail_actions": list(self.fail_actions),
                "long_actions": list(self.long_actions),
                "accept_duration_ms": whole(self.accept_duration_ms), "hang_all": self.hang_all}

    @staticmethod
    def parse(text: bytes) -> "Faults":
        """PUT /v1/faults: every field optional, absent is the default; a refusal changes nothing."""
        obj = parse_body(text, "faults")
        for k in obj:
            if k not in FAULT_FIELDS:
                raise invalid(k, "unknown field")
        f = Faults()  # PUT replaces the settings: an absent field is its default

        def number(field, hi, label):
            v = obj.get(field)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise invalid(field, "must be a number")
            if not (0 <= v <= hi):
                raise invalid(field, f"must be between 0 and {label}")
            return float(v)

        for field in ("error_rate", "permanent_rate", "hang_rate", "lost_reply_rate"):
            v = number(field, 1, "1")
            if v is not None:
                setattr(f, field, v)
        for field in ("latency_ms", "accept_duration_ms"):
            v = number(field, DAY_MS, str(DAY_MS))
            if v is not None:
                setattr(f, field, v)
        for field in ("fail_actions", "long_actions"):
            v = obj.get(field)
            if v is None:
                continue
            if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
                raise invalid(field, "must be an array of non-empty strings")
            setattr(f, field, list(v))
        v = obj.get("hang_all")
        if v is not None:
            if not isinstance(v, bool):
                raise invalid("hang_all", "must be true or false")
            f.hang_all = v
        return f


# ---------------------------------------------------------------------------------------------
# Metrics: Prometheus text format 0.0.4.

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
OUTCOMES = ("ok", "accepted", "replayed", "error", "refused")


def label_text(labels: dict) -> str:
    def esc(v: str) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())


def num_text(x: float) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return repr(x)


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.actions: dict[tuple, int] = {}  # (action, outcome) -> count
        self.durations: dict[str, list] = {}  # action -> [bucket counts..., sum, count]
        self.faults = {k: 0 for k in ("error", "hang", "permanent", "lost_reply", "latency")}
        self.http: dict[tuple, int] = {}  # (route, method, code) -> count
        self.pruned = 0
        self.started = time.time()

    def action_label(self, action: str) -> str:
        # Only unknown actions can grow the set past what the service performs: cap them.
        if action in ACTIONS or action in self.durations or len(self.durations) < MAX_ACTION_LABELS:
            return action
        return "other"

    def count_action(self, action: str, outcome: str, seconds: float) -> None:
        with self.lock:
            label = self.action_label(action)
            self.actions[(label, outcome)] = self.actions.get((label, outcome), 0) + 1
            d = self.durations.setdefault(label, [0] * len(DURATION_BUCKETS) + [0.0, 0])
            for i, edge in enumerate(DURATION_BUCKETS):
                if seconds <= edge:
                    d[i] += 1
            d[-2] += seconds
            d[-1] += 1

    def count_fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] += 1

    def count_http(self, route: str, method: str, code: int) -> None:
        with self.lock:
            k = (route, method, str(code))
            self.http[k] = self.http.get(k, 0) + 1

    def count_pruned(self, n: int) -> None:
        if n:
            with self.lock:
                self.pruned += n

    def render(self, records: dict) -> str:
        out = []

        def family(name, kind, help_text):
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        def sample(name, labels, value):
            out.append(f"{name}{{{label_text(labels)}}} {value}" if labels else f"{name} {value}")

        svc = {"service": SERVICE}
        with self.lock:
            family("cogs_service_actions_total", "counter",
                   "Action calls answered by the service, by action and outcome.")
            for action in sorted(set(ACTIONS) | {a for a, _ in self.actions}):
                for outcome in OUTCOMES:
                    sample("cogs_service_actions_total", {**svc, "action": action, "outcome": outcome},
                           self.actions.get((action, outcome), 0))
            family("cogs_service_action_duration_seconds", "histogram",
                   "Action calls on the service's side: request received to answer.")
            for action in sorted(self.durations):
                d = self.durations[action]
                base = {**svc, "action": action}
                for i, edge in enumerate(DURATION_BUCKETS):
                    sample("cogs_service_action_duration_seconds_bucket", {**base, "le": num_text(float(edge))},
                           d[i])
                sample("cogs_service_action_duration_seconds_bucket", {**base, "le": "+Inf"}, d[-1])
                sample("cogs_service_action_duration_seconds_sum", base, repr(d[-2]))
                sample("cogs_service_action_duration_seconds_count", base, d[-1])
            family("cogs_service_faults_injected_total", "counter",
                   "Faults injected into calls (PUT /v1/faults or the fault flags), by kind.")
            for kind in sorted(self.faults):
                sample("cogs_service_faults_injected_total", {**svc, "kind": kind}, self.faults[kind])
            family("cogs_pruned_total", "counter", "Records deleted by retention, by what.")
            sample("cogs_pruned_total", {**svc, "what": "ledger"}, self.pruned)
            family("cogs_http_requests_total", "counter", "Requests answered by this process's HTTP server.")
            for (route, method, code), n in sorted(self.http.items()):
                sample("cogs_http_requests_total", {"route": route, "method": method, "code": code}, n)
        family("cogs_service_records", "gauge",
               "Records the service holds, by kind (ledger: idempotency entries).")
        for kind in ("records", "zones", "ledger"):
            sample("cogs_service_records", {**svc, "kind": kind}, records.get(kind, 0))
        family("process_start_time_seconds", "gauge", "Start time of the process since the epoch, in seconds.")
        sample("process_start_time_seconds", None, repr(self.started))
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The state: ledger, records and zones in one SQLite database.

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    key        TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,
    action     TEXT NOT NULL,
    kind       TEXT NOT NULL,              -- do | undo
    outcome    TEXT NOT NULL,              -- applied | rejected | compensated | tombstone
    output     TEXT NOT NULL,              -- the answered JSON, or the refusal message
    code       TEXT NOT NULL DEFAULT '',   -- the refusal's error code
    at_us      INTEGER NOT NULL,           -- wall clock, microseconds since the epoch
    done_at_us INTEGER NOT NULL DEFAULT 0  -- a long action: when it is done (until then: 202)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    zone       TEXT NOT NULL,
    fqdn       TEXT NOT NULL,
    address    TEXT NOT NULL,
    server_id  TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_server ON records (server_id);
CREATE TABLE IF NOT EXISTS zones (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    email      TEXT NOT NULL,
    ttl        INTEGER NOT NULL,
    project_id TEXT NOT NULL
);
"""
SCHEMA_VERSION = 1


class Entry:
    __slots__ = ("seq", "key", "action", "kind", "outcome", "output", "code", "at_us", "done_at_us")

    def __init__(self, row):
        (self.seq, self.key, self.action, self.kind, self.outcome, self.output, self.code, self.at_us,
         self.done_at_us) = row

    def to_json(self) -> dict:
        o = {"seq": self.seq, "key": self.key, "action": self.action, "kind": self.kind, "outcome": self.outcome}
        if self.outcome == "rejected":
            o["error"] = self.output
            o["code"] = self.code or "failed_precondition"
        else:
            o["output"] = json.loads(self.output)
        o["at_us"] = self.at_us
        if self.done_at_us:
            o["done_at_us"] = self.done_at_us
        return o


ENTRY_COLUMNS = "seq, key, action, kind, outcome, output, code, at_us, done_at_us"


class Answer:
    """What a call gets: a status and a JSON body (text), or nothing at all (hang, lost reply)."""

    def __init__(self, status: int, body: str, *, replayed=False, unanswered=False):
        self.status = status
        self.body = body
        self.replayed = replayed
        self.unanswered = unanswered

    @staticmethod
    def error(e: Refusal) -> "Answer":
        return Answer(e.status, dumps(e.body()))

    @staticmethod
    def of(entry: Entry, now: int) -> "Answer":
        """The answer a recorded key gets, now and on every re-send."""
        if entry.outcome == "rejected":
            code = entry.code or "failed_precondition"
            status = HTTP_STATUS.get(code, 422)
            return Answer(status, dumps({"code": code, "message": entry.output, "retryable": False}))
        if entry.done_at_us and now < entry.done_at_us:
            return Answer(202, '{"accepted":true}')
        return Answer(200, '{"output":' + entry.output + "}")


class Service:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()  # one call at a time on the database
        self.closed = False
        self.stopping = threading.Event()
        self.faults = Faults()
        self.faults.error_rate = args.error_rate
        self.faults.permanent_rate = args.permanent_rate
        self.faults.hang_rate = args.hang_rate
        self.faults.lost_reply_rate = args.lost_reply_rate
        self.faults.latency_ms = args.latency_ms
        self.faults.fail_actions = list(args.fail_action or [])
        self.faults.long_actions = list(args.long_action or [])
        self.faults.accept_duration_ms = args.accept_ms
        self.faults.hang_all = args.hang_all
        self.rng = random.Random(args.seed)
        self.metrics = Metrics()
        self.stats = {k: 0 for k in (
            "calls", "status_calls", "duplicates_answered", "refused_after_undo", "expired_on_arrival",
            "errors_injected", "permanent_injected", "hangs_injected", "lost_replies_injected", "performed",
            "rejected", "retryable_errors", "compensated", "tombstones", "unknown_actions", "commits")}
        self.keep_for_us = int(args.ledger_retention_hours * 3600e6)
        self.min_age_us = int(args.ledger_min_age_minutes * 60e6)
        self.keep_at_most = args.ledger_max
        self.db = sqlite3.connect(args.state, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 5000")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"state schema version {version} is newer than this service's {SCHEMA_VERSION}")
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.ledger_count = self.db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
        # What expired while the service was down goes before the first call.
        while True:
            self.db.execute("BEGIN IMMEDIATE")
            n = self._prune(now_us(), 1000, self.ledger_count)
            self.db.execute("COMMIT")
            self.ledger_count -= n
            self.metrics.count_pruned(n)
            if n < 1000:
                break

    # ---- the ledger ----

    def _get(self, key: str) -> Entry | None:
        row = self.db.execute(f"SELECT {ENTRY_COLUMNS} FROM ledger WHERE key = ?", (key,)).fetchone()
        return Entry(row) if row else None

    def _record(self, key, action, kind, outcome, output, code="", done_at_us=0) -> Entry:
        seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger").fetchone()[0]
        row = (seq, key, action, kind, outcome, output, code, now_us(), done_at_us)
        self.db.execute(f"INSERT INTO ledger ({ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        return Entry(row)

    def _prune(self, now: int, limit: int, size: int) -> int:
        """Deletes up to `limit` expired entries, oldest first: older than the retention, or the oldest
        beyond --ledger-max, but never one younger than the minimum age. `size` is how many entries
        the ledger holds. Returns how many went."""
        old_before = now - self.keep_for_us
        safe_before = now - max(self.min_age_us, 0)
        gone = []
        for key, since in self.db.execute(
                "SELECT key, MAX(at_us, done_at_us) FROM ledger ORDER BY seq LIMIT ?", (limit,)).fetchall():
            over = size > len(gone) + self.keep_at_most
            if since >= safe_before or (since >= old_before and not over):
                break
            gone.append(key)
        self.db.executemany("DELETE FROM ledger WHERE key = ?", [(k,) for k in gone])
        return len(gone)

    @staticmethod
    def _base(key: str) -> str:
        return key[:-len(DO_SUFFIX)] if key.endswith(DO_SUFFIX) else key

    def _tombstoned(self, do_key: str) -> bool:
        e = self._get(self._base(do_key) + UNDO_SUFFIX)
        return e is not None and e.outcome == "tombstone"

    def _do_applied(self, undo_key: str) -> bool:
        base = undo_key[:-len(UNDO_SUFFIX)]
        for k in (base + DO_SUFFIX, base):
            e = self._get(k)
            if e is not None:
                return e.kind == "do" and e.outcome == "applied"
        return False

    # ---- calls ----

    def roll(self, action: str, kind: str) -> str | None:
        """One draw per new call: the fault it gets, if any (the kit's FaultRoller)."""
        f = self.faults
        u = self.rng.random()
        edge = f.error_rate
        if u < edge:
            return "error"
        edge += f.hang_rate
        if u < edge:
            return "hang"
        if kind == "do":
            if action in f.fail_actions:
                return "permanent"
            edge += f.permanent_rate
            if u < edge:
                return "permanent"
        edge += f.lost_reply_rate
        if u < edge:
            return "lost_reply"
        return None

    def call(self, action: str, key: str, inp: dict, deadline: float) -> Answer:
        """An action call whose request was understood: the ledger semantics of the protocol."""
        with self.lock:
            self.stats["calls"] += 1
            if self.faults.hang_all:
                self.stats["hangs_injected"] += 1
                self.metrics.count_fault("hang")
                return Answer(0, "", unanswered=True)
            if time.monotonic() >= deadline:
                self.stats["expired_on_arrival"] += 1
                return Answer.error(Refusal("deadline_exceeded", "the call's deadline passed before it arrived"))
            if action not in ACTIONS:
                self.stats["unknown_actions"] += 1
                return Answer.error(Refusal("not_found", f"{SERVICE} has no action '{action}'"))
            if self.closed:
                return Answer.error(Refusal("unavailable", "the service is stopping"))
            entry = self._get(key)
            if entry is not None and not self.args.break_replays:
                self.stats["duplicates_answered"] += 1
                answer = Answer.of(entry, now_us())
                answer.replayed = True
                return answer
            kind = "undo" if key.endswith(UNDO_SUFFIX) else "do"
            # A do compensated before it came is refused whatever the faults (it is recorded).
            fault = None if kind == "do" and self._tombstoned(key) else self.roll(action, kind)
            if fault == "error":
                self.stats["errors_injected"] += 1
                self.metrics.count_fault("error")
                return Answer.error(Refusal("unavailable", "injected error: try again"))
            if fault == "hang":
                self.stats["hangs_injected"] += 1
                self.metrics.count_fault("hang")
                return Answer(0, "", unanswered=True)
            try:
                answer = self._transact(action, key, inp, fault, replacing=entry is not None)
            except sqlite3.Error as e:
                log.error("state write failed: %s", e)
                return Answer.error(Refusal("unavailable", f"state write failed: {e}"))
            if fault == "lost_reply":
                self.stats["lost_replies_injected"] += 1
                self.metrics.count_fault("lost_reply")
                return Answer(0, "", unanswered=True)
            return answer

    def _transact(self, action, key, inp, fault, replacing) -> Answer:
        """One transaction: the action's writes, its ledger entry and the pruning it brings."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            counts = {}
            if replacing:  # --break-replays: the key is applied again (deliberately wrong)
                db.execute("DELETE FROM ledger WHERE key = ?", (key,))
            entry = self._decide(action, key, inp, fault, counts)
            # Each entry made takes up to two expired ones with it (bounded growth, bounded work).
            pruned = self._prune(entry.at_us, 2, self.ledger_count + (0 if replacing else 1))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.stats["commits"] += 1
        for k, n in counts.items():
            self.stats[k] += n
        self.ledger_count += (0 if replacing else 1) - pruned
        self.metrics.count_pruned(pruned)
        return Answer.of(entry, now_us())

    def _decide(self, action, key, inp, fault, counts) -> Entry:
        if key.endswith(UNDO_SUFFIX):
            if not self._do_applied(key):
                counts["tombstones"] = 1
                return self._record(key, action, "undo", "tombstone", '{"tombstone":true}')
            return self._perform(action, key, inp, "undo", "compensated", counts)
        if self._tombstoned(key):
            counts["refused_after_undo"] = 1
            return self._record(key, action, "do", "rejected", "compensated before applied", "failed_precondition")
        if fault == "permanent":
            counts["permanent_injected"] = 1
            counts["rejected"] = 1
            self.metrics.count_fault("permanent")
            if action in self.faults.fail_actions:
                why = f"{action} always fails (fail_actions)"
            else:
                why = f"{action} failed permanently (injected)"
            return self._record(key, action, "do", "rejected", why, "failed_precondition")
        return self._perform(action, key, inp, "do", "applied", counts)

    def _perform(self, action, key, inp, kind, outcome, counts) -> Entry:
        db = self.db
        db.execute("SAVEPOINT perform")
        try:
            output = ACTIONS[action](db, Input(inp), CallContext(key, self.args.zone))
        except Refusal as e:
            db.execute("ROLLBACK TO perform")
            db.execute("RELEASE perform")
            code = e.code
            message = e.message
            if status_retryable(e.status):  # a refusal kept for the key must not look retryable
                code, message = "failed_precondition", f"{e.code}: {e.message}"
            counts["rejected"] = 1
            return self._record(key, action, kind, "rejected", message, code)
        db.execute("RELEASE perform")
        counts["performed"] = 1
        if outcome == "compensated":
            counts["compensated"] = 1
        done_at_us = 0
        if kind == "do" and action in self.faults.long_actions:
            done_at_us = now_us() + max(1, int(self.faults.accept_duration_ms * 1000))
        return self._record(key, action, kind, outcome, dumps(output), done_at_us=done_at_us)

    def status(self, key: str) -> Answer:
        with self.lock:
            self.stats["status_calls"] += 1
            self._open()
            if self.faults.hang_all:
                self.stats["hangs_injected"] += 1
                self.metrics.count_fault("hang")
                return Answer(0, "", unanswered=True)
            entry = self._get(key)
            if entry is not None:
                return Answer.of(entry, now_us())
            if not key.endswith(UNDO_SUFFIX) and self._tombstoned(key):
                return Answer.error(Refusal("failed_precondition", "compensated before applied"))
            return Answer.error(Refusal("not_found", f"no action recorded under key '{key}'"))

    # ---- reads ----

    def _open(self) -> None:
        if self.closed:
            raise Refusal("unavailable", "the service is stopping")

    def inventory(self) -> dict:
        with self.lock:
            self._open()
            records = [{"id": r[0], "fqdn": r[1], "name": r[2], "zone": r[3], "address": r[4], "server_id": r[5]}
                       for r in self.db.execute(
                           "SELECT id, fqdn, name, zone, address, server_id FROM records ORDER BY id")]
            zones = [zone_object(r) for r in self.db.execute(
                "SELECT id, name, email, ttl, project_id FROM zones ORDER BY id")]
        return {"records": records, "zones": zones}

    def ledger_json(self) -> list:
        with self.lock:
            self._open()
            rows = self.db.execute(f"SELECT {ENTRY_COLUMNS} FROM ledger ORDER BY seq").fetchall()
        return [Entry(r).to_json() for r in rows]

    def record_counts(self) -> dict:
        with self.lock:
            if self.closed:
                return {}
            return {"records": self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0],
                    "zones": self.db.execute("SELECT COUNT(*) FROM zones").fetchone()[0],
                    "ledger": self.ledger_count}

    def stats_json(self) -> dict:
        with self.lock:
            return {"service": SERVICE, "ledger_entries": self.ledger_count, **self.stats}

    def close(self) -> None:
        self.stopping.set()
        with self.lock:
            if not self.closed:
                self.closed = True
                self.db.close()


# ---------------------------------------------------------------------------------------------
# Logging: one JSON object per line on stderr (docs/service-protocol.md, "Logs").

TRACE = 5
LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL, "off": logging.CRITICAL + 10}
LEVEL_NAMES = {TRACE: "trace", logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
               logging.ERROR: "error", logging.CRITICAL: "critical"}


def level_name(level: int) -> str:
    for name, n in LEVELS.items():
        if n == level:
            return name
    return LEVEL_NAMES.get(level, "info")


class LineFormatter(logging.Formatter):
    def __init__(self, fmt_kind: str):
        super().__init__()
        self.kind = fmt_kind

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        level = LEVEL_NAMES.get(record.levelno, "info")
        ctx = getattr(record, "ctx", None) or {}
        msg = record.getMessage()
        if self.kind == "text":
            extra = "".join(f" {k.replace('_id', '')}={v}" for k, v in ctx.items() if v)
            return f"{ts} {level} {record.name}: {msg}{extra}"
        line = {"ts": ts, "level": level, "process": PROCESS, "component": record.name, "msg": msg}
        for k in ("trace_id", "workflow_id", "resource_id"):
            if ctx.get(k):
                line[k] = ctx[k]
        return dumps(line)


def setup_logging(level: str, fmt_kind: str) -> None:
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(fmt_kind))
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(LEVELS[level])


def loud(msg: str) -> None:
    """A warning written whatever the level: what must never go unnoticed."""
    record = log.makeRecord(log.name, logging.WARNING, __file__, 0, msg, (), None)
    for h in log.handlers:
        h.handle(record)


TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def trace_id_of(header: str | None) -> str:
    m = TRACEPARENT_RE.fullmatch((header or "").strip())
    if not m or m.group(1) == "ff" or set(m.group(2)) == {"0"} or set(m.group(3)) == {"0"}:
        return ""
    return m.group(2)


# ---------------------------------------------------------------------------------------------
# HTTP.

ACTIONS_PREFIX = "/v1/actions/"


def parse_body(raw: bytes, whole_name: str) -> dict:
    text = raw.decode("utf-8", errors="replace")
    if not text.strip(" \t\r\n"):
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise invalid(whole_name, f"not JSON: {e}")
    if not isinstance(value, dict):
        raise invalid(whole_name, "must be a JSON object")
    return value


class BodyTooLarge(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = PROCESS
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this many seconds

    # ---- plumbing ----

    @property
    def svc(self) -> Service:
        return self.server.service

    def version_string(self):
        return PROCESS

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()  # here, on the connection's thread: never in the accept loop
        super().setup()

    def log_message(self, fmt, *args):  # the default writes access lines to stderr: ours are JSON
        if log.isEnabledFor(TRACE):
            log.log(TRACE, "%s %s", self.address_string(), fmt % args)

    def __getattr__(self, name):
        if name.startswith("do_"):  # every method is routed: a wrong one gets 405, not 501
            return self._dispatch
        raise AttributeError(name)

    def send_error(self, code, message=None, explain=None):
        """Errors of the request itself (bad request line, oversize headers): the error object."""
        self.close_connection = True
        err = Refusal("invalid_argument", message or "bad request")
        self._send(code, dumps(err.body()), route="other")

    def _send(self, status: int, body: str | bytes, *, content_type="application/json",
              headers=(), route="other"):
        data = body.encode() if isinstance(body, str) else body
        method = self.command if self.command in ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH") else "other"
        self.svc.metrics.count_http(route, method, status)  # counted before the caller can see it
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _error(self, e: Refusal, *, headers=(), route="other"):
        self._send(e.status, dumps(e.body()), headers=headers, route=route)

    def _json(self, status: int, value, route: str):
        self._send(status, dumps(value), route=route)

    def _method_not_allowed(self, allowed: str, route: str):
        e = Refusal("invalid_argument", f"method {self.command} not allowed: use {allowed}")
        self._send(405, dumps(e.body()), headers=[("Allow", allowed)], route=route)

    def _read_body(self) -> bytes:
        limit = self.svc.args.max_body_bytes
        te = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        if te and te != "identity":
            if te != "chunked":
                self.close_connection = True
                raise invalid("header Transfer-Encoding", f"unsupported: {te}")
            return self._read_chunked(limit)
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        cl = cl.strip()
        if not cl.isascii() or not cl.isdigit():
            self.close_connection = True
            raise invalid("header Content-Length", "must be a non-negative integer")
        n = int(cl)
        if n > limit:
            self.close_connection = True
            self._drain(n)
            raise BodyTooLarge()
        data = self.rfile.read(n)
        if len(data) < n:
            self.close_connection = True
            raise ConnectionError("body cut short")
        return data

    def _drain(self, n: int) -> None:
        """Reads what the client sends of an oversize body (up to 16 MiB), so that it reads our 413."""
        if n > 16 << 20:
            return
        try:
            self.connection.settimeout(5)
            while n > 0:
                got = self.rfile.read(min(n, 1 << 16))
                if not got:
                    break
                n -= len(got)
        except OSError:
            pass

    def _read_chunked(self, limit: int) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(1026)
            size_text = line.split(b";")[0].strip()
            if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                self.close_connection = True
                raise invalid("body", "bad chunked encoding")
            size = int(size_text, 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            if len(out) + size > limit:
                self.close_connection = True
                raise BodyTooLarge()
            out += self.rfile.read(size)
            self.rfile.readline(3)

    def _authorized(self) -> bool:
        tokens = self.server.token_digests
        if not tokens:
            return True  # --insecure
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Bearer ") or len(header) <= len("Bearer "):
            return False
        # The header's bytes as sent (http.client's parser decodes them as ISO-8859-1).
        digest = hashlib.sha256(header[len("Bearer "):].encode("latin-1", errors="replace")).digest()
        match = False
        for want in tokens:  # every one compared: no early exit
            match = hmac.compare_digest(digest, want) or match
        return match

    # ---- routes ----

    def _dispatch(self):
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        try:
            body = self._read_body()
        except BodyTooLarge:
            self._send(413, dumps(Refusal("invalid_argument", "request body too large: the limit is "
                                                              f"{self.svc.args.max_body_bytes} bytes").body()))
            return
        except Refusal as e:
            self._error(e)
            return
        except (ConnectionError, OSError):
            self.close_connection = True
            return

        try:
            self._route(path, parts.query, body)
        except Refusal as e:
            self._error(e, route=self._route_label(path))
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # a bug: answered as retryable, the connection closed
            log.error("%s %s: %s: %s", self.command, path, type(e).__name__, e)
            self.close_connection = True
            self._error(Refusal("internal", f"{type(e).__name__}: {e}"), route=self._route_label(path))

    def _route(self, path: str, query: str, body: bytes):
        if path in ("/healthz", "/metrics"):
            if self.command not in ("GET", "HEAD"):
                self._method_not_allowed("GET", path)
            elif path == "/healthz":
                self._json(200, {"status": "ok"}, path)
            else:
                text = self.svc.metrics.render(self.svc.record_counts())
                self._send(200, text, content_type="text/plain; version=0.0.4; charset=utf-8", route=path)
            return
        if not self._authorized():
            self._error(Refusal("unauthenticated",
                                "missing or wrong bearer token (header Authorization: Bearer <token>)"),
                        headers=[("WWW-Authenticate", "Bearer")], route=self._route_label(path))
            return
        if path == "/v1/actions/status":
            if self.command != "GET":
                self._method_not_allowed("GET", "/v1/actions/{id}")
                return
            self._status(query)
        elif path.startswith(ACTIONS_PREFIX):
            action = path[len(ACTIONS_PREFIX):]
            if not action or "/" in action:
                self._error(Refusal("not_found", f"no route {self.command} {path}"))
            elif self.command != "POST":
                self._method_not_allowed("POST", "/v1/actions/{id}")
            else:
                self._action(action, body)
        elif path == "/v1/inventory":
            if self.command != "GET":
                self._method_not_allowed("GET", path)
            else:
                self._json(200, self.svc.inventory(), path)
        elif path == "/v1/stats":
            if self.command != "GET":
                self._method_not_allowed("GET", path)
            else:
                self._json(200, self.svc.stats_json(), path)
        elif path == "/v1/log-levels":
            self._log_levels(body)
        elif path in ("/v1/faults", "/v1/ledger") and not self.svc.args.test_routes:
            # Test routes exist only in a process started with --test-routes.
            self._error(Refusal("not_found", f"no route {self.command} {path}"))
        elif path == "/v1/faults":
            if self.command == "GET":
                self._json(200, self.svc.faults.to_json(), path)
            elif self.command == "PUT":
                try:
                    faults = Faults.parse(body)
                except Refusal as e:
                    self._error(e, route=path)
                    return
                with self.svc.lock:
                    self.svc.faults = faults
                log.info("faults now %s", dumps(faults.to_json()))
                self._json(200, faults.to_json(), path)
            else:
                self._method_not_allowed("GET, PUT", path)
        elif path == "/v1/ledger":
            if self.command != "GET":
                self._method_not_allowed("GET", path)
            else:
                self._json(200, self.svc.ledger_json(), path)
        else:
            self._error(Refusal("not_found", f"no route {self.command} {path}"))

    @staticmethod
    def _route_label(path: str) -> str:
        if path.startswith(ACTIONS_PREFIX):
            return "/v1/actions/{id}"
        if path in ("/v1/inventory", "/v1/stats", "/v1/log-levels", "/v1/faults", "/v1/ledger"):
            return path
        return "other"

    def _log_levels(self, body: bytes):
        route = "/v1/log-levels"
        if self.command == "PUT":
            try:
                obj = parse_body(body, "body")
                levels = {}
                for k, v in obj.items():
                    if k not in ("*", SERVICE):
                        raise invalid(k, f"no such component (known: *, {SERVICE})")
                    if not isinstance(v, str) or v not in LEVELS:
                        raise invalid(k, "must be one of " + ", ".join(LEVELS))
                    levels[k] = v
            except Refusal as e:
                self._error(e, route=route)
                return
            for v in levels.values():
                log.setLevel(LEVELS[v])
        elif self.command != "GET":
            self._method_not_allowed("GET, PUT", route)
            return
        name = level_name(log.level)
        self._json(200, {"*": name, SERVICE: name}, route)

    def _status(self, query: str):
        key = (urllib.parse.parse_qs(query, keep_blank_values=True).get("key") or [""])[0]
        if not key:
            self._error(Refusal("invalid_argument", "missing query parameter key"), route="/v1/actions/{id}")
            return
        answer = self.svc.status(key)
        if answer.unanswered:
            self._hang(time.monotonic() + DEFAULT_BUDGET_S)
            return
        self._deliver(answer, "/v1/actions/{id}")

    def _hang(self, until: float):
        """Never answers: holds the call until the caller's budget is spent (or the service stops),
        then closes the connection."""
        self.svc.stopping.wait(max(0.0, until - time.monotonic()))
        self.close_connection = True

    def _deliver(self, answer: Answer, route: str, observe=None):
        """Answers, after latency_ms if set; `observe` counts and logs the call first, so that whoever
        has the answer finds it in the metrics and the log."""
        latency = self.svc.faults.latency_ms
        if latency > 0:
            self.svc.metrics.count_fault("latency")
            self.svc.stopping.wait(latency / 1000.0)
        if observe is not None:
            observe(answer)
        self._send(answer.status, answer.body, route=route)

    def _action(self, action: str, raw: bytes):
        start = time.monotonic()
        key = self.headers.get("Idempotency-Key") or ""
        trace_id = trace_id_of(self.headers.get("traceparent"))
        resource_id = ""

        def finish(answer: Answer):
            took = time.monotonic() - start
            if answer.unanswered:
                outcome = "unanswered"
            elif answer.replayed:
                outcome = "replayed"
            elif answer.status == 200:
                outcome = "ok"
            elif answer.status == 202:
                outcome = "accepted"
            elif status_retryable(answer.status):
                outcome = "error"
            else:
                outcome = "refused"
            if outcome != "unanswered":
                self.svc.metrics.count_action(action, outcome, took)
            if outcome != "replayed":
                slash = key.find("/")
                log.info("action=%s outcome=%s duration_ms=%.3f key=%s", action, outcome, took * 1000, key,
                         extra={"ctx": {"trace_id": trace_id, "workflow_id": key[:slash] if slash > 0 else "",
                                        "resource_id": resource_id}})

        if not key:
            answer = Answer.error(Refusal("invalid_argument", "missing header Idempotency-Key"))
            self._deliver(answer, "/v1/actions/{id}", finish)
            return
        deadline_text = (self.headers.get("X-Cogs-Deadline-Ms") or "").strip()
        if not deadline_text:
            deadline = start + DEFAULT_BUDGET_S
        elif re.fullmatch(r"[+-]?[0-9]{1,18}", deadline_text):
            deadline = start + int(deadline_text) / 1000.0  # 0 or less: already expired
        else:
            answer = Answer.error(Refusal("invalid_argument",
                                          "header X-Cogs-Deadline-Ms must be an integer (milliseconds)"))
            self._deliver(answer, "/v1/actions/{id}", finish)
            return
        try:
            inp = parse_body(raw, "body")
        except Refusal as e:
            answer = Answer.error(e)
            self._deliver(answer, "/v1/actions/{id}", finish)
            return
        for field in ("id", "server_id"):
            if isinstance(inp.get(field), str):
                resource_id = inp[field]
                break
        answer = self.svc.call(action, key, inp, deadline)
        if answer.unanswered:
            self._hang(deadline)
            finish(answer)
            return
        self._deliver(answer, "/v1/actions/{id}", finish)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        level = logging.DEBUG if isinstance(exc, (OSError, ssl.SSLError)) else logging.ERROR
        log.log(level, "connection from %s: %s: %s", client_address[0] if client_address else "?",
                type(exc).__name__, exc)


class Server6(Server):
    address_family = socket.AF_INET6


# ---------------------------------------------------------------------------------------------
# The process.


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or len(port) > 5 or int(port) > 65535:
        raise ValueError(f"--listen must be HOST:PORT, got '{text}'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_token(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        token = f.readline().strip()
    if not token:
        raise ValueError(f"{path}: the file holds no token")
    return token


def rate(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return v


def non_negative(text: str) -> float:
    v = float(text)
    if not v >= 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError("must be a number >= 0")
    return v


def positive(text: str) -> float:
    v = float(text)
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError("must be a number > 0")
    return v


def zone_name(text: str) -> str:
    z = parse_domain(text)
    if z is None:
        raise argparse.ArgumentTypeError(DOMAIN_RULE)
    return z


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROCESS, description="cogs DNS records service (docs/service-protocol.md)")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="HOST:PORT to listen on (port 0: any free port; default: 127.0.0.1:0)")
    p.add_argument("--port-file", metavar="PATH",
                   help="write the bound port to this file once listening (atomically)")
    p.add_argument("--token-file", action="append", default=[], metavar="PATH",
                   help="a file holding the token callers present (first line); repeatable, any accepted")
    p.add_argument("--insecure", action="store_true",
                   help="serve every caller without a token (development only)")
    p.add_argument("--state", default=":memory:", metavar="PATH",
                   help="the SQLite state file (default: in memory)")
    p.add_argument("--zone", default="cogs.internal", type=zone_name, metavar="NAME",
                   help="the zone of records whose register names none (default: cogs.internal)")
    p.add_argument("--test-routes", action="store_true", help="serve PUT/GET /v1/faults and GET /v1/ledger")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (PEM; with --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key (PEM)")
    p.add_argument("--log-level", default="info", choices=list(LEVELS), help="the starting level (default: info)")
    p.add_argument("--log-format", default="json", choices=["json", "text"],
                   help="json: one object per line (default); text: for people")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, metavar="N",
                   help="larger request bodies get 413 (default: 1 MiB)")
    p.add_argument("--ledger-retention-hours", type=positive, default=24.0, metavar="H",
                   help="ledger entries older than this are pruned (default: 24)")
    p.add_argument("--ledger-max", type=int, default=1_000_000, metavar="N",
                   help="beyond this many ledger entries the oldest are pruned (default: 1000000)")
    p.add_argument("--ledger-min-age-minutes", type=non_negative, default=60.0, metavar="M",
                   help="no ledger entry younger than this is pruned (default: 60)")
    p.add_argument("--break-replays", action="store_true",
                   help="BROKEN ON PURPOSE: apply a re-sent key again (a conformance checker's negative test)")
    # The fault flags every cogs service has (PUT /v1/faults changes them at run time).
    p.add_argument("--seed", type=int, default=1, metavar="N", help="seed for the fault draws")
    p.add_argument("--error-rate", type=rate, default=0.0, metavar="R", help="share of new calls answered 503")
    p.add_argument("--permanent-rate", type=rate, default=0.0, metavar="R",
                   help="share of new do calls refused for good (422, recorded)")
    p.add_argument("--hang-rate", type=rate, default=0.0, metavar="R", help="share of new calls never answered")
    p.add_argument("--lost-reply-rate", type=rate, default=0.0, metavar="R",
                   help="share of new calls applied and recorded but never answered")
    p.add_argument("--latency-ms", type=non_negative, default=0.0, metavar="MS", help="delay before every answer")
    p.add_argument("--fail-action", action="append", metavar="ACTION",
                   help="an action whose do always fails (422, recorded; repeatable)")
    p.add_argument("--long-action", action="append", metavar="ACTION",
                   help="an action answered 202 and done --accept-ms later (repeatable)")
    p.add_argument("--accept-ms", type=non_negative, default=100.0, metavar="MS",
                   help="how long a long action runs (default: 100)")
    p.add_argument("--hang-all", action="store_true", help="never answer any call")
    args = p.parse_args(argv)
    if args.ledger_max < 0:
        p.error("--ledger-max must be >= 0")
    if args.max_body_bytes < 0:
        p.error("--max-body-bytes must be >= 0")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        host, port = parse_listen(args.listen)
    except ValueError as e:
        log.critical("%s", e)
        return 2
    digests = []
    for path in args.token_file:
        try:
            digests.append(hashlib.sha256(read_token(path).encode()).digest())
        except (OSError, ValueError, UnicodeDecodeError) as e:
            log.critical("--token-file: %s", e)
            return 2
    if not digests:
        if not args.insecure:
            log.critical("no credential: give --token-file FILE (the token the control plane presents), or "
                         "--insecure to serve every caller without one (development only)")
            return 2
        loud("--insecure: no token file, every caller is served without authentication (development only)")
    if args.break_replays:
        loud("!!! --break-replays: THIS SERVICE IS BROKEN ON PURPOSE: a re-sent idempotency key is APPLIED "
             "AGAIN instead of answered from the ledger. Only for a conformance checker's negative test; "
             "never in a deployment !!!")

    try:
        service = Service(args)
    except (sqlite3.Error, OSError, RuntimeError) as e:
        log.critical("cannot open state %s: %s", args.state, e)
        return 1
    try:
        server_class = Server6 if ":" in host else Server
        server = server_class((host, port), Handler, bind_and_activate=True)
    except OSError as e:
        log.critical("cannot listen on %s: %s", args.listen, e)
        return 1
    server.service = service
    server.token_digests = digests
    tls = "plain http"
    if args.tls_cert:
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            log.critical("tls: %s", e)
            return 2
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        tls = "tls"
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    log.info("%s listening on %s:%d (auth: %s; %s; test routes: %s; faults: %s)", PROCESS, shown, bound,
             "bearer token" if digests else "none", tls, "on" if args.test_routes else "off",
             dumps(service.faults.to_json()))
    log.info("state: %s, %d ledger entries", "in memory" if args.state == ":memory:" else args.state,
             service.ledger_count)

    # Before the port file: whoever waits for it may signal the process at once.
    def on_signal(signo, _frame):
        log.info("signal %d, stopping", signo)
        service.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.port_file:
        try:
            write_port_file(args.port_file, bound)
        except OSError as e:
            log.critical("--port-file: %s", e)
            return 1
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        stats = service.stats_json()
        service.close()
    log.info("stopped: %s", dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
