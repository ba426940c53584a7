#!/usr/bin/env python3
"""Tests of cogs_dns.py over HTTP: each test starts the service as a subprocess on port 0.

Run: python3 examples/dns/test_cogs_dns.py   (standard library only; about 10 s)
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICE = os.path.join(HERE, "cogs_dns.py")
TOKEN = "dns-test-token-6f1c2a"
OTHER_TOKEN = "dns-second-token-93bd"
START_TIMEOUT_S = 30  # generous: a slow machine still starts in time; a fast one never waits it out
STOP_TIMEOUT_S = 20
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

REGISTER = {"server_id": "srv-1", "name": "Web1", "address": "10.0.0.5"}


class Resp:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"Resp({self.status}, {self.body[:300]!r})"


class Svc:
    """One cogs_dns.py process."""

    def __init__(self, test: unittest.TestCase, tmp: str, flags: list[str], name: str):
        self.test = test
        self.tmp = tmp
        self.port_file = os.path.join(tmp, f"{name}.port")
        self.err_path = os.path.join(tmp, f"{name}.stderr")
        self.tls_ca: str | None = None
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, SERVICE, "--listen", "127.0.0.1:0", "--port-file", self.port_file, *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err)
        test.addCleanup(self.kill)  # whatever happens in the test, the process goes
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.test.fail(f"the service exited ({self.proc.returncode}) before listening:\n{self.stderr()}")
            try:
                with open(self.port_file) as f:
                    text = f.read()
                if text.endswith("\n"):
                    return int(text)
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        self.test.fail(f"no port file after {START_TIMEOUT_S} s:\n{self.stderr()}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.err.close()

    def stop(self, sig=signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        finally:
            self.kill()

    def stderr(self) -> str:
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stderr().splitlines() if line.strip()]

    def request(self, method: str, path: str, body=None, headers=None, token: str | None = TOKEN,
                timeout: float = 20) -> Resp:
        if self.tls_ca:
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def act(self, action: str, key: str | None, body=None, headers=None, **kw) -> Resp:
        h = dict(headers or {})
        if key is not None:
            h["Idempotency-Key"] = key
        return self.request("POST", f"/v1/actions/{action}", {} if body is None else body, h, **kw)

    def status(self, key: str) -> Resp:
        from urllib.parse import quote
        return self.request("GET", "/v1/actions/status?key=" + quote(key, safe=""))

    def inventory(self) -> dict:
        r = self.request("GET", "/v1/inventory")
        self.test.assertEqual(r.status, 200, r)
        return r.json

    def ledger(self) -> list:
        r = self.request("GET", "/v1/ledger")
        self.test.assertEqual(r.status, 200, r)
        return r.json

    def faults(self, settings) -> Resp:
        return self.request("PUT", "/v1/faults", settings)

    def metrics(self) -> dict:
        r = self.request("GET", "/metrics", token=None)
        self.test.assertEqual(r.status, 200, r)
        out = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                out[series] = float(value)
        return out


class DnsTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="cogs-dns-test-")
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.token_file = self.write("token", TOKEN + "\n")
        self.n = 0

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, *flags, auth=True, test_routes=True, name=None) -> Svc:
        self.n += 1
        args = list(flags)
        if auth:
            args += ["--token-file", self.token_file]
        if test_routes:
            args.append("--test-routes")
        return Svc(self, self.tmp, args, name or f"svc{self.n}")

    def assertError(self, r: Resp, status: int, code: str, message: str | None = None, prefix: str | None = None):
        self.assertEqual(r.status, status, r)
        body = r.json
        self.assertEqual(set(body), {"code", "message", "retryable"}, body)
        self.assertEqual(body["code"], code, body)
        self.assertEqual(body["retryable"], status >= 500 or status in (408, 429), body)
        if message is not None:
            self.assertEqual(body["message"], message)
        if prefix is not None:
            self.assertTrue(body["message"].startswith(prefix), body["message"])

    def assertOutput(self, r: Resp) -> dict:
        self.assertEqual(r.status, 200, r)
        self.assertEqual(set(r.json), {"output"}, r.json)
        return r.json["output"]

    def poll(self, what, until, timeout_s=20.0, every_s=0.02):
        """Calls what() until until(result), within a generous deadline; returns the result."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = what()
            if until(got):
                return got
            if time.monotonic() > deadline:
                self.fail(f"still {got!r} after {timeout_s} s")
            time.sleep(every_s)


# ---------------------------------------------------------------------------------------------


class StartTest(DnsTest):
    def test_no_credential_exits_2(self):
        r = subprocess.run([sys.executable, SERVICE, "--listen", "127.0.0.1:0"], capture_output=True,
                           timeout=START_TIMEOUT_S)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no credential: ", r.stderr.decode())

    def test_empty_token_file_exits_2(self):
        empty = self.write("empty", "\n")
        r = subprocess.run([sys.executable, SERVICE, "--listen", "127.0.0.1:0", "--token-file", empty],
                           capture_output=True, timeout=START_TIMEOUT_S)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--token-file", r.stderr.decode())

    def test_insecure_serves_everyone_and_warns(self):
        svc = self.start("--insecure", auth=False)
        r = svc.request("GET", "/v1/inventory", token=None)
        self.assertEqual(r.status, 200, r)
        warn = [l for l in svc.log_lines() if l["level"] == "warn" and "--insecure" in l["msg"]]
        self.assertEqual(len(warn), 1, svc.stderr())

    def test_sigint_and_sigterm_exit_0(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            svc = self.start()
            self.assertOutput(svc.act("register", "wf-sig/dns/do", REGISTER))
            self.assertEqual(svc.stop(sig), 0, svc.stderr())
            self.assertIn("stopping", svc.stderr())

    def test_every_stderr_line_is_a_json_log_line(self):
        svc = self.start("--break-replays")
        svc.act("register", "wf-x/dns/do", REGISTER)
        svc.stop()
        for line in svc.log_lines():
            self.assertLessEqual({"ts", "level", "process", "component", "msg"}, set(line), line)
            self.assertEqual(line["process"], "cogs-dns")
            self.assertTrue(line["ts"].endswith("Z"), line)


class AuthTest(DnsTest):
    def test_bearer_token(self):
        second = self.write("second", OTHER_TOKEN + "\nignored second line\n")
        svc = self.start("--token-file", second)
        # Health and metrics never need the token.
        r = svc.request("GET", "/healthz", token=None)
        self.assertEqual((r.status, r.json), (200, {"status": "ok"}))
        r = svc.request("GET", "/metrics", token=None)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type").startswith("text/plain; version=0.0.4"), r.headers)
        # Everything else does.
        for token in (None, "wrong", "", TOKEN + "x"):
            for method, path in (("GET", "/v1/inventory"), ("GET", "/v1/ledger"), ("PUT", "/v1/faults"),
                                 ("GET", "/v1/actions/status?key=k"), ("GET", "/v1/nothing")):
                r = svc.request(method, path, token=token)
                self.assertError(r, 401, "unauthenticated")
                self.assertEqual(r.header("www-authenticate"), "Bearer")
        r = svc.request("GET", "/v1/inventory", token=None, headers={"Authorization": "Basic " + TOKEN})
        self.assertError(r, 401, "unauthenticated")
        r = svc.act("register", "wf-a/dns/do", REGISTER, token="wrong")
        self.assertError(r, 401, "unauthenticated")
        self.assertEqual(svc.ledger(), [])  # nothing recorded for a refused caller
        # Either token file's token is accepted.
        self.assertEqual(svc.request("GET", "/v1/inventory", token=TOKEN).status, 200)
        self.assertEqual(svc.request("GET", "/v1/inventory", token=OTHER_TOKEN).status, 200)
        self.assertOutput(svc.act("register", "wf-a/dns/do", REGISTER, token=OTHER_TOKEN))
        svc.stop()
        self.assertNotIn(TOKEN, svc.stderr())
        self.assertNotIn(OTHER_TOKEN, svc.stderr())

    def test_test_routes_absent_without_the_flag(self):
        svc = self.start(test_routes=False)
        for method, path in (("GET", "/v1/faults"), ("PUT", "/v1/faults"), ("GET", "/v1/ledger")):
            self.assertError(svc.request(method, path, body={}), 404, "not_found", f"no route {method} {path}")
            self.assertError(svc.request(method, path, body={}, token=None), 401, "unauthenticated")


class ActionsTest(DnsTest):
    def test_register_and_inventory(self):
        svc = self.start()
        out = self.assertOutput(svc.act("register", "wf-1/dns/do", REGISTER))
        self.assertEqual(set(out), {"record_id", "fqdn", "address", "server_id"})
        self.assertEqual(out["fqdn"], "web1.cogs.internal")  # lower-cased, in the default zone
        self.assertEqual((out["address"], out["server_id"]), ("10.0.0.5", "srv-1"))
        out2 = self.assertOutput(svc.act("register", "wf-2/dns/do",
                                         {"server_id": "srv-2", "name": "db", "address": "10.0.0.6",
                                          "zone": "Example.ORG."}))
        self.assertEqual(out2["fqdn"], "db.example.org")
        self.assertNotEqual(out["record_id"], out2["record_id"])
        inv = svc.inventory()
        self.assertEqual(set(inv), {"records", "zones"})
        self.assertEqual(inv["zones"], [])
        self.assertEqual([r["id"] for r in inv["records"]], sorted([out["record_id"], out2["record_id"]]))
        by_id = {r["id"]: r for r in inv["records"]}
        self.assertEqual(by_id[out["record_id"]],
                         {"id": out["record_id"], "fqdn": "web1.cogs.internal", "name": "web1",
                          "zone": "cogs.internal", "address": "10.0.0.5", "server_id": "srv-1"})
        self.assertEqual(svc.inventory(), inv)  # no change in between: equal reads

    def test_default_zone_flag(self):
        svc = self.start("--zone", "Lab.Example.")
        out = self.assertOutput(svc.act("register", "wf-1/dns/do", REGISTER))
        self.assertEqual(out["fqdn"], "web1.lab.example")

    def test_record_id_is_derived_from_the_key(self):
        ids = []
        for _ in range(2):
            svc = self.start()
            ids.append(self.assertOutput(svc.act("register", "wf-same/dns/do", REGISTER))["record_id"])
            ids.append(self.assertOutput(svc.act("register", "wf-other/dns/do", REGISTER))["record_id"])
        self.assertEqual(ids[0], ids[2])
        self.assertEqual(ids[1], ids[3])
        self.assertNotEqual(ids[0], ids[1])

    def test_unregister(self):
        svc = self.start()
        for i, server in enumerate(("s1", "s1", "s2")):
            self.assertOutput(svc.act("register", f"wf-r{i}/dns/do",
                                      {"server_id": server, "name": f"h{i}", "address": f"10.0.0.{i + 1}"}))
        self.assertEqual(self.assertOutput(svc.act("unregister", "wf-del/dns/do", {"server_id": "s1"})),
                         {"removed": 2})
        self.assertEqual([r["server_id"] for r in svc.inventory()["records"]], ["s2"])
        self.assertEqual(self.assertOutput(svc.act("unregister", "wf-del2/dns/do", {"server_id": "s1"})),
                         {"removed": 0})
        self.assertEqual(self.assertOutput(svc.act("unregister", "wf-del3/dns/do", {"server_id": "nobody"})),
                         {"removed": 0})

    def test_zones(self):
        svc = self.start()
        zone = {"id": "z1", "name": "Example.ORG."}
        want = {"id": "z1", "name": "example.org", "email": "hostmaster@example.org", "ttl": 3600,
                "project_id": ""}
        self.assertEqual(self.assertOutput(svc.act("create_zone", "wf-z1/zone/do", zone)), want)
        # The same zone under another key: the same answer, nothing written twice.
        self.assertEqual(self.assertOutput(svc.act("create_zone", "wf-z2/zone/do", zone)), want)
        self.assertError(svc.act("create_zone", "wf-z3/zone/do", {**zone, "ttl": 60}), 409, "already_exists",
                         "id: zone z1 exists with other content")
        self.assertError(svc.act("create_zone", "wf-z4/zone/do", {"id": "z2", "name": "example.org"}), 409,
                         "conflict", "name: zone example.org exists as z1")
        full = {"id": "z3", "name": "b.example", "email": "ops@b.example", "ttl": 300, "project_id": "p1"}
        self.assertEqual(self.assertOutput(svc.act("create_zone", "wf-z5/zone/do", full)), full)
        self.assertEqual(svc.inventory()["zones"], [want, full])
        self.assertEqual(self.assertOutput(svc.act("delete_zone", "wf-z6/zone/do", {"id": "z1"})),
                         {"deleted": True})
        self.assertEqual(self.assertOutput(svc.act("delete_zone", "wf-z7/zone/do", {"id": "z1"})),
                         {"deleted": False})
        self.assertEqual(svc.inventory()["zones"], [full])

    def test_validation_messages(self):
        svc = self.start()
        ok = dict(REGISTER)
        cases = [
            ("register", {}, "server_id: required"),
            ("register", {**ok, "typo": 1}, "typo: unknown field"),
            ("register", {**ok, "server_id": 5}, "server_id: must be a string"),
            ("register", {**ok, "server_id": ""}, "server_id: required"),
            ("register", {**ok, "name": None}, "name: required"),
            ("register", {**ok, "name": 3}, "name: must be a string"),
            ("register", {**ok, "name": "-web"}, "name: must be a DNS label"),
            ("register", {**ok, "name": "web_1"}, "name: must be a DNS label"),
            ("register", {**ok, "name": "web.1"}, "name: must be a DNS label"),
            ("register", {**ok, "name": "a" * 64}, "name: longer than 63 characters"),
            ("register", {**ok, "address": "10.0.0.256"}, "address: must be a dotted IPv4 address"),
            ("register", {**ok, "address": "10.0.0"}, "address: must be a dotted IPv4 address"),
            ("register", {**ok, "address": "010.0.0.1"}, "address: must be a dotted IPv4 address"),
            ("register", {**ok, "address": "::1"}, "address: must be a dotted IPv4 address"),
            ("register", {**ok, "zone": "bad..zone"}, "zone: must be a domain name"),
            ("register", {**ok, "zone": 7}, "zone: must be a string"),
            ("unregister", {}, "server_id: required"),
            ("unregister", {"server_id": "s", "name": "x"}, "name: unknown field"),
            ("create_zone", {"name": "example.org"}, "id: required"),
            ("create_zone", {"id": ".z", "name": "example.org"},
             "id: must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'"),
            ("create_zone", {"id": "z"}, "name: required"),
            ("create_zone", {"id": "z", "name": "exa mple.org"}, "name: must be a domain name"),
            ("create_zone", {"id": "z", "name": "example.org", "ttl": 59}, "ttl: must be between 60 and 86400"),
            ("create_zone", {"id": "z", "name": "example.org", "ttl": 86401}, "ttl: must be between 60 and 86400"),
            ("create_zone", {"id": "z", "name": "example.org", "ttl": "60"}, "ttl: must be an integer"),
            ("create_zone", {"id": "z", "name": "example.org", "ttl": True}, "ttl: must be an integer"),
            ("create_zone", {"id": "z", "name": "example.org", "ttl": 61.5}, "ttl: must be an integer"),
            ("create_zone", {"id": "z", "name": "example.org", "email": "nope"},
             "email: must be an address like hostmaster@example.org"),
            ("create_zone", {"id": "z", "name": "example.org", "project_id": 1}, "project_id: must be a string"),
            ("create_zone", {"id": "z", "name": "example.org", "ttl": 60, "extra": 1}, "extra: unknown field"),
            ("delete_zone", {}, "id: required"),
            ("delete_zone", {"id": "z", "name": "x"}, "name: unknown field"),
        ]
        for i, (action, body, message) in enumerate(cases):
            with self.subTest(action=action, body=body):
                key = f"wf-v{i}/s/do"
                r = svc.act(action, key, body)
                self.assertError(r, 400, "invalid_argument", prefix=message)
                # A refusal is definitive: recorded for the key and answered again, even to a valid body.
                again = svc.act(action, key, {"server_id": "s", "name": "ok", "address": "10.1.1.1"}
                                if action == "register" else {"id": "zz", "name": "ok.example"})
                self.assertEqual((again.status, again.body), (r.status, r.body))
        self.assertEqual(svc.inventory(), {"records": [], "zones": []})
        ledger = svc.ledger()
        self.assertEqual(len(ledger), len(cases))
        self.assertTrue(all(e["outcome"] == "rejected" and e["code"] == "invalid_argument" for e in ledger))

    def test_request_errors(self):
        svc = self.start("--max-body-bytes", str(1 << 20))
        self.assertError(svc.act("register", None, REGISTER), 400, "invalid_argument",
                         "missing header Idempotency-Key")
        self.assertError(svc.act("register", "wf-b1/dns/do", "{"), 400, "invalid_argument",
                         prefix="body: not JSON: ")
        for body in ("[1]", "null", '"text"', "3"):
            self.assertError(svc.act("register", "wf-b2/dns/do", body), 400, "invalid_argument",
                             "body: must be a JSON object")
        # An empty body is {}.
        self.assertError(svc.act("register", "wf-b3/dns/do", ""), 400, "invalid_argument", "server_id: required")
        # An action the service does not have: 404, nothing recorded.
        self.assertError(svc.act("reboot", "wf-b4/dns/do", {}), 404, "not_found", "dns has no action 'reboot'")
        self.assertError(svc.status("wf-b4/dns/do"), 404, "not_found")
        self.assertError(svc.request("POST", "/v1/actions/", {}, {"Idempotency-Key": "k"}), 404, "not_found")
        self.assertError(svc.request("POST", "/v1/actions/a/b", {}, {"Idempotency-Key": "k"}), 404, "not_found")
        # Oversize bodies.
        big = b'{"server_id": "' + b"x" * (1 << 20) + b'"}'
        r = svc.act("register", "wf-b5/dns/do", big)
        self.assertError(r, 413, "invalid_argument", "request body too large: the limit is 1048576 bytes")
        self.assertError(svc.status("wf-b5/dns/do"), 404, "not_found")
        # Wrong methods on known routes: 405 with Allow.
        for method, path, allow in (("GET", "/v1/actions/register", "POST"),
                                    ("PUT", "/v1/actions/register", "POST"), ("POST", "/v1/inventory", "GET"),
                                    ("DELETE", "/v1/faults", "GET, PUT"), ("POST", "/v1/ledger", "GET"),
                                    ("POST", "/v1/actions/status", "GET"), ("POST", "/healthz", "GET")):
            r = svc.request(method, path, {})
            self.assertError(r, 405, "invalid_argument", f"method {method} not allowed: use {allow}")
            self.assertEqual(r.header("allow"), allow)
        self.assertError(svc.request("GET", "/v1/nothing"), 404, "not_found", "no route GET /v1/nothing")
        self.assertError(svc.request("GET", "/v1/actions/status"), 400, "invalid_argument",
                         "missing query parameter key")
        self.assertError(svc.act("register", "wf-b6/dns/do", REGISTER, {"X-Cogs-Deadline-Ms": "soon"}), 400,
                         "invalid_argument", prefix="header X-Cogs-Deadline-Ms")
        # Only the empty body, the bad-field refusal (wf-b3) is recorded: parse errors are not.
        self.assertEqual([e["key"] for e in svc.ledger()], ["wf-b3/dns/do"])
        self.assertEqual(svc.inventory()["records"], [])

    def test_concurrent_calls_with_one_key_apply_once(self):
        svc = self.start()
        results = []
        lock = threading.Lock()

        def send(key):
            r = svc.act("register", key, REGISTER)
            with lock:
                results.append((key, r.status, r.body))

        threads = [threading.Thread(target=send, args=("wf-same/dns/do" if i % 2 else f"wf-{i}/dns/do",))
                   for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        same = [(s, b) for k, s, b in results if k == "wf-same/dns/do"]
        self.assertEqual(len(same), 8)
        self.assertEqual(len(set(same)), 1, same)
        self.assertEqual(same[0][0], 200)
        self.assertEqual(len(svc.inventory()["records"]), 9)  # 8 distinct keys + the shared one


class LedgerTest(DnsTest):
    def test_replay_with_the_same_and_a_different_body(self):
        svc = self.start()
        first = svc.act("register", "wf-1/dns/do", REGISTER)
        out = self.assertOutput(first)
        same = svc.act("register", "wf-1/dns/do", REGISTER)
        other = svc.act("register", "wf-1/dns/do", {"server_id": "srv-9", "name": "other", "address": "10.9.9.9"})
        self.assertEqual((same.status, same.body), (first.status, first.body))
        self.assertEqual((other.status, other.body), (first.status, first.body))
        self.assertEqual([r["id"] for r in svc.inventory()["records"]], [out["record_id"]])
        ledger = svc.ledger()
        self.assertEqual(len(ledger), 1)
        self.assertEqual({k: ledger[0][k] for k in ("seq", "key", "action", "kind", "outcome", "output")},
                         {"seq": 1, "key": "wf-1/dns/do", "action": "register", "kind": "do",
                          "outcome": "applied", "output": out})
        self.assertIsInstance(ledger[0]["at_us"], int)
        # The status of the key is the recorded answer.
        self.assertEqual(svc.status("wf-1/dns/do").body, first.body)
        # A re-send under another action name is still the key's answer.
        self.assertEqual(svc.act("create_zone", "wf-1/dns/do", {"id": "z"}).body, first.body)
        m = svc.metrics()
        self.assertEqual(m['cogs_service_actions_total{service="dns",action="register",outcome="ok"}'], 1)
        self.assertEqual(m['cogs_service_actions_total{service="dns",action="register",outcome="replayed"}'], 2)

    def test_undo_before_do_leaves_a_tombstone(self):
        svc = self.start()
        undo = svc.act("unregister", "wf-t/dns/undo", {"server_id": "srv-1"})
        self.assertEqual(self.assertOutput(undo), {"tombstone": True})
        again = svc.act("unregister", "wf-t/dns/undo", {"server_id": "srv-1"})
        self.assertEqual((again.status, again.body), (undo.status, undo.body))
        late = svc.act("register", "wf-t/dns/do", REGISTER)
        self.assertError(late, 422, "failed_precondition", "compensated before applied")
        self.assertEqual(late.json["retryable"], False)
        resent = svc.act("register", "wf-t/dns/do", REGISTER)
        self.assertEqual((resent.status, resent.body), (late.status, late.body))
        self.assertEqual(svc.status("wf-t/dns/do").body, late.body)
        # A bare key K is undone by K/undo too.
        self.assertEqual(self.assertOutput(svc.act("unregister", "wf-bare/undo", {"server_id": "x"})),
                         {"tombstone": True})
        self.assertError(svc.act("register", "wf-bare", REGISTER), 422, "failed_precondition",
                         "compensated before applied")
        # The undo of a do that was refused finds nothing applied: a tombstone as well.
        self.assertEqual(svc.act("register", "wf-r/dns/do", {}).status, 400)
        self.assertEqual(self.assertOutput(svc.act("unregister", "wf-r/dns/undo", {"server_id": "srv-1"})),
                         {"tombstone": True})
        self.assertEqual(svc.inventory()["records"], [])
        ledger = [(e["key"], e["kind"], e["outcome"]) for e in svc.ledger()]
        self.assertEqual(ledger, [("wf-t/dns/undo", "undo", "tombstone"), ("wf-t/dns/do", "do", "rejected"),
                                  ("wf-bare/undo", "undo", "tombstone"), ("wf-bare", "do", "rejected"),
                                  ("wf-r/dns/do", "do", "rejected"), ("wf-r/dns/undo", "undo", "tombstone")])
        self.assertEqual(svc.ledger()[1]["code"], "failed_precondition")

    def test_undo_after_do_removes_the_record(self):
        svc = self.start()
        keep = self.assertOutput(svc.act("register", "wf-k/dns/do",
                                         {"server_id": "srv-2", "name": "keep", "address": "10.0.0.2"}))
        self.assertOutput(svc.act("register", "wf-u/dns/do", REGISTER))
        self.assertEqual(len(svc.inventory()["records"]), 2)
        undo = svc.act("unregister", "wf-u/dns/undo", {"server_id": "srv-1"})
        self.assertEqual(self.assertOutput(undo), {"removed": 1})
        self.assertEqual([r["id"] for r in svc.inventory()["records"]], [keep["record_id"]])
        again = svc.act("unregister", "wf-u/dns/undo", {"server_id": "srv-1"})
        self.assertEqual((again.status, again.body), (undo.status, undo.body))  # as the first, not {"removed": 0}
        # The do is not applied again either.
        self.assertOutput(svc.act("register", "wf-u/dns/do", REGISTER))
        self.assertEqual(len(svc.inventory()["records"]), 1)
        # A bare key K and its K/undo.
        self.assertOutput(svc.act("register", "wf-bare", REGISTER))
        self.assertEqual(self.assertOutput(svc.act("unregister", "wf-bare/undo", {"server_id": "srv-1"})),
                         {"removed": 1})
        outcomes = {e["key"]: (e["kind"], e["outcome"]) for e in svc.ledger()}
        self.assertEqual(outcomes["wf-u/dns/undo"], ("undo", "compensated"))
        self.assertEqual(outcomes["wf-bare/undo"], ("undo", "compensated"))

    def test_undo_with_the_engines_default_compensation_body(self):
        # A compensation without an input template is sent {"input": <the do's input>, "output": ...}.
        svc = self.start()
        out = self.assertOutput(svc.act("register", "wf-c/dns/do", REGISTER))
        undo = svc.act("unregister", "wf-c/dns/undo", {"input": REGISTER, "output": out})
        self.assertEqual(self.assertOutput(undo), {"removed": 1})
        self.assertEqual(svc.inventory()["records"], [])
        for i, (body, message) in enumerate((({"input": {}, "output": None}, "input.server_id: required"),
                                             ({"input": {"server_id": 7}}, "input.server_id: must be a string"),
                                             ({"input": 3, "output": None}, "input: must be an object"),
                                             ({"input": REGISTER, "extra": 1}, "extra: unknown field"))):
            with self.subTest(body=body):
                self.assertError(svc.act("unregister", f"wf-c{i}/dns/do", body), 400, "invalid_argument", message)

    def test_deadline(self):
        svc = self.start()
        for value in ("0", "-5"):
            r = svc.act("register", "wf-d/dns/do", REGISTER, {"X-Cogs-Deadline-Ms": value})
            self.assertError(r, 504, "deadline_exceeded")
            self.assertError(svc.status("wf-d/dns/do"), 404, "not_found")  # nothing recorded
        self.assertEqual(svc.ledger(), [])
        self.assertEqual(svc.inventory()["records"], [])
        self.assertOutput(svc.act("register", "wf-d/dns/do", REGISTER, {"X-Cogs-Deadline-Ms": "30000"}))
        self.assertEqual(len(svc.inventory()["records"]), 1)

    def test_break_replays_applies_twice(self):
        svc = self.start("--break-replays")
        self.assertIn("--break-replays", svc.stderr())
        self.assertIn("BROKEN", svc.stderr())
        a = self.assertOutput(svc.act("register", "wf-br/dns/do", REGISTER))
        b = self.assertOutput(svc.act("register", "wf-br/dns/do", REGISTER))
        self.assertNotEqual(a["record_id"], b["record_id"])
        records = svc.inventory()["records"]
        self.assertEqual(len(records), 2)  # the duplicate a conformance checker must catch
        self.assertEqual({(r["fqdn"], r["server_id"]) for r in records}, {("web1.cogs.internal", "srv-1")})

    def test_state_survives_a_restart(self):
        state = os.path.join(self.tmp, "dns.db")
        svc = self.start("--state", state, name="before")
        first = svc.act("register", "wf-1/dns/do", REGISTER)
        self.assertOutput(first)
        zone = svc.act("create_zone", "wf-2/zone/do", {"id": "z1", "name": "example.org"})
        self.assertOutput(zone)
        self.assertOutput(svc.act("unregister", "wf-3/dns/undo", {"server_id": "srv-1"}))  # a tombstone
        refused = svc.act("register", "wf-4/dns/do", {"name": "x"})
        self.assertEqual(refused.status, 400)
        inventory, ledger = svc.inventory(), svc.ledger()
        self.assertEqual(svc.stop(), 0, svc.stderr())

        svc = self.start("--state", state, name="after")
        self.assertIn(f"state: {state}, 4 ledger entries", svc.stderr())
        self.assertEqual(svc.inventory(), inventory)
        self.assertEqual(svc.ledger(), ledger)
        again = svc.act("register", "wf-1/dns/do", {"server_id": "other", "name": "b", "address": "10.2.2.2"})
        self.assertEqual((again.status, again.body), (first.status, first.body))
        resent = svc.act("create_zone", "wf-2/zone/do", {"id": "z1", "name": "example.org"})
        self.assertEqual(resent.body, zone.body)
        self.assertEqual(svc.act("register", "wf-4/dns/do", REGISTER).body, refused.body)
        self.assertError(svc.act("register", "wf-3/dns/do", REGISTER), 422, "failed_precondition",
                         "compensated before applied")
        self.assertEqual(svc.inventory(), inventory)
        self.assertOutput(svc.act("register", "wf-5/dns/do", REGISTER))
        self.assertEqual([e["seq"] for e in svc.ledger()], [1, 2, 3, 4, 5, 6])
        self.assertEqual(svc.stop(), 0, svc.stderr())

    def test_ledger_is_pruned(self):
        state = os.path.join(self.tmp, "dns.db")
        svc = self.start("--state", state, "--ledger-max", "2", "--ledger-min-age-minutes", "0", name="max")
        for i in range(5):
            self.assertOutput(svc.act("register", f"wf-p{i}/dns/do",
                                      {"server_id": f"s{i}", "name": f"h{i}", "address": f"10.0.0.{i + 1}"}))
        self.assertEqual([e["key"] for e in svc.ledger()], ["wf-p3/dns/do", "wf-p4/dns/do"])
        self.assertError(svc.status("wf-p0/dns/do"), 404, "not_found")  # a pruned key is a key never seen
        m = svc.metrics()
        self.assertEqual(m['cogs_pruned_total{service="dns",what="ledger"}'], 3)
        self.assertEqual(m['cogs_service_records{service="dns",kind="ledger"}'], 2)
        self.assertEqual(m['cogs_service_records{service="dns",kind="records"}'], 5)
        self.assertEqual(svc.stop(), 0)
        # At start, every expired entry goes (here: a retention of a few microseconds).
        svc = self.start("--state", state, "--ledger-retention-hours", "1e-9", "--ledger-min-age-minutes", "0",
                         name="retention")
        self.assertEqual(svc.ledger(), [])
        self.assertEqual(len(svc.inventory()["records"]), 5)  # records are not the ledger's


class FaultsTest(DnsTest):
    def test_faults_validation(self):
        svc = self.start()
        r = svc.request("GET", "/v1/faults")
        self.assertEqual(r.status, 200)
        initial = r.json
        self.assertEqual(set(initial), {"error_rate", "permanent_rate", "hang_rate", "lost_reply_rate",
                                        "latency_ms", "fail_actions", "long_actions", "accept_duration_ms",
                                        "hang_all"})
        cases = [
            ({"typo": 1}, "typo: unknown field"),
            ({"error_rate": 1.5}, "error_rate: must be between 0 and 1"),
            ({"error_rate": -0.1}, "error_rate: must be between 0 and 1"),
            ({"error_rate": "x"}, "error_rate: must be a number"),
            ({"error_rate": True}, "error_rate: must be a number"),
            ({"latency_ms": -1}, "latency_ms: must be between 0 and 86400000"),
            ({"accept_duration_ms": "100"}, "accept_duration_ms: must be a number"),
            ({"fail_actions": "register"}, "fail_actions: must be an array of non-empty strings"),
            ({"long_actions": [""]}, "long_actions: must be an array of non-empty strings"),
            ({"long_actions": [1]}, "long_actions: must be an array of non-empty strings"),
            ({"hang_all": "yes"}, "hang_all: must be true or false"),
            # A valid field with an invalid one: nothing changes.
            ({"fail_actions": ["register"], "error_rate": 2}, "error_rate: must be between 0 and 1"),
            ([], "faults: must be a JSON object"),
        ]
        for body, message in cases:
            with self.subTest(body=body):
                self.assertError(svc.request("PUT", "/v1/faults", body), 400, "invalid_argument", message)
                self.assertEqual(svc.request("GET", "/v1/faults").json, initial)
        self.assertError(svc.request("PUT", "/v1/faults", "{"), 400, "invalid_argument",
                         prefix="faults: not JSON: ")
        r = svc.faults({"fail_actions": ["register"], "error_rate": 0.25})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["fail_actions"], r.json["error_rate"]), (["register"], 0.25))
        self.assertEqual(svc.request("GET", "/v1/faults").json, r.json)
        cleared = svc.faults({}).json
        self.assertEqual((cleared["fail_actions"], cleared["error_rate"]), ([], 0))

    def test_long_action(self):
        svc = self.start()
        accept_ms = 800
        self.assertEqual(svc.faults({"long_actions": ["register"], "accept_duration_ms": accept_ms}).status, 200)
        t0 = time.monotonic()
        r = svc.act("register", "wf-l/dns/do", REGISTER)
        self.assertEqual((r.status, r.json), (202, {"accepted": True}))
        s = svc.status("wf-l/dns/do")
        resent = svc.act("register", "wf-l/dns/do", REGISTER)
        if time.monotonic() - t0 < accept_ms / 1000.0:  # still running for certain: nothing else is asserted
            self.assertEqual((s.status, s.json), (202, {"accepted": True}))
            self.assertEqual((resent.status, resent.json), (202, {"accepted": True}))
        done = self.poll(lambda: svc.status("wf-l/dns/do"), lambda x: x.status != 202)
        out = self.assertOutput(done)
        self.assertEqual(out["fqdn"], "web1.cogs.internal")
        self.assertGreaterEqual(time.monotonic() - t0, accept_ms / 1000.0 * 0.9)
        self.assertEqual(svc.act("register", "wf-l/dns/do", REGISTER).body, done.body)
        self.assertEqual([r["id"] for r in svc.inventory()["records"]], [out["record_id"]])
        entry = svc.ledger()[0]
        self.assertGreater(entry["done_at_us"], entry["at_us"])
        self.assertError(svc.status("wf-never/dns/do"), 404, "not_found",
                         "no action recorded under key 'wf-never/dns/do'")
        m = svc.metrics()
        self.assertEqual(m['cogs_service_actions_total{service="dns",action="register",outcome="accepted"}'], 1)

    def test_fail_actions_are_recorded(self):
        svc = self.start()
        svc.faults({"fail_actions": ["register", "unregister"]})
        r = svc.act("register", "wf-f/dns/do", REGISTER)
        self.assertError(r, 422, "failed_precondition", "register always fails (fail_actions)")
        # An undo is never failed by fail_actions (the kit's rule): here a tombstone.
        self.assertEqual(self.assertOutput(svc.act("unregister", "wf-f/dns/undo", {"server_id": "srv-1"})),
                         {"tombstone": True})
        svc.faults({})
        self.assertEqual(svc.act("register", "wf-f/dns/do", REGISTER).body, r.body)  # remembered for the key
        self.assertOutput(svc.act("register", "wf-g/dns/do", REGISTER))
        entry = svc.ledger()[0]
        self.assertEqual((entry["outcome"], entry["code"], entry["error"]),
                         ("rejected", "failed_precondition", "register always fails (fail_actions)"))

    def test_error_rate_is_not_recorded(self):
        svc = self.start()
        svc.faults({"error_rate": 1})
        r = svc.act("register", "wf-e/dns/do", REGISTER)
        self.assertError(r, 503, "unavailable")
        self.assertError(svc.status("wf-e/dns/do"), 404, "not_found")
        self.assertEqual(svc.ledger(), [])
        svc.faults({})
        self.assertOutput(svc.act("register", "wf-e/dns/do", REGISTER))
        m = svc.metrics()
        self.assertEqual(m['cogs_service_actions_total{service="dns",action="register",outcome="error"}'], 1)
        self.assertEqual(m['cogs_service_faults_injected_total{service="dns",kind="error"}'], 1)

    def test_hang_and_lost_reply(self):
        svc = self.start()
        budget = {"X-Cogs-Deadline-Ms": "300"}
        svc.faults({"hang_rate": 1})
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            svc.act("register", "wf-h/dns/do", REGISTER, budget)
        self.assertError(svc.status("wf-h/dns/do"), 404, "not_found")  # a hang applies nothing
        svc.faults({"lost_reply_rate": 1})
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            svc.act("register", "wf-h/dns/do", REGISTER, budget)
        done = svc.status("wf-h/dns/do")  # a lost reply was applied and recorded
        out = self.assertOutput(done)
        svc.faults({})
        self.assertEqual(svc.act("register", "wf-h/dns/do", REGISTER).body, done.body)
        self.assertEqual([r["id"] for r in svc.inventory()["records"]], [out["record_id"]])
        lines = [l["msg"] for l in svc.log_lines() if l["msg"].startswith("action=")]
        self.assertEqual(sum("outcome=unanswered" in m for m in lines), 2, lines)


class ObservabilityTest(DnsTest):
    def test_metrics_and_log_lines(self):
        svc = self.start()
        self.assertOutput(svc.act("register", "wf-1/dns/do", REGISTER, {"traceparent": TRACEPARENT}))
        svc.act("register", "wf-1/dns/do", REGISTER)  # replay: counted, not logged
        self.assertEqual(svc.act("register", "wf-2/dns/do", {}).status, 400)
        self.assertEqual(svc.act("register", "wf-3/dns/do", REGISTER, {"X-Cogs-Deadline-Ms": "0"}).status, 504)
        self.assertOutput(svc.act("create_zone", "wf-4/zone/do", {"id": "z1", "name": "example.org"}))
        self.assertEqual(svc.act("register", None, REGISTER).status, 400)
        m = svc.metrics()

        def actions(action, outcome):
            return m[f'cogs_service_actions_total{{service="dns",action="{action}",outcome="{outcome}"}}']

        self.assertEqual([actions("register", o) for o in ("ok", "accepted", "replayed", "error", "refused")],
                         [1, 0, 1, 1, 2])
        self.assertEqual(actions("create_zone", "ok"), 1)
        self.assertEqual(m['cogs_service_records{service="dns",kind="records"}'], 1)
        self.assertEqual(m['cogs_service_records{service="dns",kind="zones"}'], 1)
        self.assertEqual(m['cogs_service_records{service="dns",kind="ledger"}'], 3)
        self.assertEqual(m['cogs_service_action_duration_seconds_count{service="dns",action="register"}'], 5)

        svc.stop()
        lines = [l for l in svc.log_lines() if l["msg"].startswith("action=")]
        self.assertEqual(len(lines), 5, lines)  # every call but the replay
        first = lines[0]
        self.assertEqual({k: first[k] for k in ("level", "process", "component", "trace_id", "workflow_id",
                                                "resource_id")},
                         {"level": "info", "process": "cogs-dns", "component": "dns",
                          "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "workflow_id": "wf-1",
                          "resource_id": "srv-1"})
        self.assertRegex(first["msg"], r"^action=register outcome=ok duration_ms=\d+\.\d{3} key=wf-1/dns/do$")
        self.assertNotIn("trace_id", lines[1])
        self.assertRegex(lines[1]["msg"], r"^action=register outcome=refused .* key=wf-2/dns/do$")
        self.assertRegex(lines[2]["msg"], r"^action=register outcome=error ")
        self.assertEqual(lines[3]["resource_id"], "z1")  # the input's "id"
        self.assertNotIn(TOKEN, svc.stderr())

    def test_stats_and_log_levels(self):
        svc = self.start()
        self.assertOutput(svc.act("register", "wf-1/dns/do", REGISTER))
        r = svc.request("GET", "/v1/stats")
        self.assertEqual(r.status, 200)
        self.assertEqual((r.json["service"], r.json["performed"], r.json["ledger_entries"]), ("dns", 1, 1))
        self.assertEqual(svc.request("GET", "/v1/log-levels").json, {"*": "info", "dns": "info"})
        self.assertEqual(svc.request("PUT", "/v1/log-levels", {"dns": "warn"}).json, {"*": "warn", "dns": "warn"})
        self.assertError(svc.request("PUT", "/v1/log-levels", {"dns": "loud"}), 400, "invalid_argument",
                         prefix="dns: must be one of")
        self.assertOutput(svc.act("register", "wf-2/dns/do", REGISTER))  # at warn: no line
        svc.stop()
        self.assertNotIn("key=wf-2/dns/do", svc.stderr())


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command to make a certificate")
class TlsTest(DnsTest):
    def test_https(self):
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        svc = self.start("--tls-cert", cert, "--tls-key", key)
        svc.tls_ca = cert
        self.assertEqual(svc.request("GET", "/healthz", token=None).json, {"status": "ok"})
        self.assertOutput(svc.act("register", "wf-tls/dns/do", REGISTER))
        self.assertEqual(len(svc.inventory()["records"]), 1)
        # Plain HTTP on the TLS port gets no answer, and the service goes on serving.
        svc.tls_ca = None
        with self.assertRaises((http.client.HTTPException, ConnectionError, OSError)):
            svc.request("GET", "/healthz", token=None, timeout=10)
        svc.tls_ca = cert
        self.assertEqual(svc.request("GET", "/healthz", token=None).status, 200)
        self.assertIn("; tls;", svc.stderr())


if __name__ == "__main__":
    unittest.main(verbosity=2)
