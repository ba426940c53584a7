#!/usr/bin/python3
"""integration.openstack: the real OpenStack clients against `cogs dev`, as a tenant uses them.

    /usr/bin/python3 openstack_test.py BIN_DIR SOURCE_DIR [unittest arguments]

One `cogs dev --port 0 --hosts 2 --boot-ms 50` (TLS on, its default) on a temporary directory for
the whole run; every check runs Debian's `openstack` command (python3-openstackclient) with
OS_CLIENT_CONFIG_FILE=<data dir>/clouds.yaml, the file cogs dev writes, and `-f json`, so results
are parsed, not grepped:

 1. clouds.yaml: 0600, the clouds cogs-admin and cogs-demo, auth_url <api>/v3, the CA, the
    passwords of <data dir>/openstack/<user>.password, and the line cogs dev prints about it.
 2. cogs-demo (password login): token issue, flavor list, image list, a network and its subnet, a
    server (--wait) with its address in the subnet, server list and show, a volume attached and
    detached, stop and start, then every delete, each checked as gone.
 3. Token auth (--os-auth-type token with the token a password login issued, and with a cogs token
    made by the admin): token issue, a network, a server created and deleted (--wait).
 4. A second project and member (made with `cogs project create`, `cogs user create`): the first
    tenant's server, network, subnet and volume are invisible to it and its delete fails; the
    server is still ACTIVE for its owner.
 5. Bad input refused in OpenStack's shape (a /33 subnet, an unknown flavor or image, a name too
    long, a volume of size 0).
 6. examples/openstack/sdk_server.py (openstacksdk) creates, waits for, prints and deletes a server.
 7. A key pair imported, a server booted with it, the pair deleted.
 8. A server booted on a port made beforehand (`--nic port-id=`): it takes the port's address; its
    delete leaves the port, free, to the tenant.
 9. cogs dev restarted on the same directory: the same passwords, nothing re-created; a user whose
    password file is gone is left alone and out of clouds.yaml.

Waits for a state poll with a deadline (no sleeps): the CLI takes ~0.6 s of CPU to start, which is
the pace of every poll. Exits 77 (a failure: scripts/install-deps installs them) when the clients are
not installed.
"""
import datetime
import importlib.util
import ipaddress
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

OPENSTACK = "/usr/bin/openstack"
PYTHON = "/usr/bin/python3"
STATE_DEADLINE_S = 60  # a state the cloud reaches within a second idle; generous under load
BIN = SOURCE = ""


def _clients_missing():
    if not os.access(OPENSTACK, os.X_OK):
        return f"{OPENSTACK} (Debian package python3-openstackclient)"
    for module, package in (("openstack", "python3-openstacksdk"), ("yaml", "python3-yaml")):
        if importlib.util.find_spec(module) is None:
            return f"the module {module} for {PYTHON} (Debian package {package})"
    return None


def _base_env():
    """The environment without any OS_* setting of the caller's (and without pyenv's Python path,
    which would shadow Debian's modules for /usr/bin/python3)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OS_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONWARNINGS"] = "ignore"  # the clients' deprecation warnings would clutter stderr
    return env


class Run:
    """What a command did."""

    def __init__(self, argv, proc, seconds):
        self.argv, self.rc, self.out, self.err = argv, proc.returncode, proc.stdout, proc.stderr
        self.seconds = seconds

    def __str__(self):
        return (f"$ {' '.join(self.argv)}\n  rc={self.rc} ({self.seconds:.1f} s)\n"
                f"  stdout: {self.out.strip()[:2000]}\n  stderr: {self.err.strip()[-3000:]}")


class DevCloud:
    """`cogs dev` as a child on its own temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cogs-openstack.")
        self.proc = None
        self.pids = []
        self.starts = 0

    def start(self):
        try:
            os.remove(os.path.join(self.dir, "dev.json"))  # what the wait below waits for
        except FileNotFoundError:
            pass
        self.starts += 1
        self.out_path = os.path.join(self.dir, f"dev-{self.starts}.out")
        self.err_path = os.path.join(self.dir, f"dev-{self.starts}.err")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [os.path.join(BIN, "cogs"), "dev", "--data-dir", self.dir, "--port", "0", "--hosts", "2",
                 "--boot-ms", "50"], stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=_base_env())
        deadline = time.monotonic() + 120
        dev_json = os.path.join(self.dir, "dev.json")
        while not os.path.exists(dev_json):
            if self.proc.poll() is not None:
                raise AssertionError(f"cogs dev exited ({self.proc.returncode}) before writing dev.json:\n"
                                     + self.tail(self.err_path))
            if time.monotonic() > deadline:
                raise AssertionError("no dev.json after 120 s:\n" + self.tail(self.err_path))
            time.sleep(0.1)  # a file to appear: no client to poll with
        with open(dev_json) as f:
            dev = json.load(f)
        self.api_url, self.ca = dev["api_url"], dev["ca_file"]
        self.pids = [p["pid"] for p in dev["processes"]]
        with open(dev["admin_token_file"]) as f:
            self.admin_token = f.read().strip()
        with open(self.out_path) as f:
            self.stdout = f.read()
        with open(self.err_path) as f:
            self.stderr = f.read()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.pids:  # its children, had it died without stopping them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pids = []
        rc, self.proc = (self.proc.returncode if self.proc else 0), None
        return rc

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def tail(path, lines=30):
        try:
            with open(path, errors="replace") as f:
                return f"---- tail of {path}\n" + "".join(f.readlines()[-lines:])
        except OSError as e:
            return f"---- {path}: {e}\n"

    def logs(self):
        return "".join(self.tail(p) for p in (self.err_path, os.path.join(self.dir, "logs", "cogsd.log")))


class OpenStackTest(unittest.TestCase):
    cloud = None
    failed = False

    @classmethod
    def setUpClass(cls):
        cls.cloud = DevCloud()
        cls.addClassCleanup(cls._cleanup)
        cls.cloud.start()
        cls.clouds_yaml = os.path.join(cls.cloud.dir, "clouds.yaml")
        projects = cls.cogs("project", "list")["projects"]
        cls.project_ids = {p["name"]: p["id"] for p in projects}

    @classmethod
    def _cleanup(cls):
        if cls.failed:
            print(cls.cloud.logs(), file=sys.stderr)
        rc = cls.cloud.stop()
        cls.cloud.remove()
        if rc != 0:
            print(f"cogs dev exited with {rc} after SIGINT", file=sys.stderr)

    def run(self, result=None):
        result = super().run(result)
        if result is not None and not result.wasSuccessful():
            type(self).failed = True
        return result

    def setUp(self):
        self.started = time.monotonic()
        self.client_runs, self.client_seconds = 0, 0.0

    def tearDown(self):
        print(f"  [{self.id().rsplit('.', 1)[-1]}: {time.monotonic() - self.started:.1f} s, "
              f"{self.client_runs} openstack runs taking {self.client_seconds:.1f} s]", file=sys.stderr)

    # ---- running the clients

    @classmethod
    def cogs(cls, *args):
        """The cogs CLI as the admin, its JSON answer."""
        env = dict(_base_env(), COGS_URL=cls.cloud.api_url, COGS_TOKEN=cls.cloud.admin_token,
                   COGS_CACERT=cls.cloud.ca)
        argv = [os.path.join(BIN, "cogs"), "-o", "json", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"$ {' '.join(argv)}: rc={proc.returncode}\n{proc.stdout}{proc.stderr}")
        try:
            return json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            return proc.stdout

    def openstack(self, *args, cloud="cogs-demo", auth=None, config=None, check=True):
        """`openstack` with --os-cloud CLOUD from `config` (cogs dev's clouds.yaml by default), or with
        the --os-* arguments `auth` and no clouds.yaml. Its Run; with check, it must succeed."""
        env = _base_env()
        if auth is None:
            env["OS_CLIENT_CONFIG_FILE"] = config or self.clouds_yaml
            argv = [OPENSTACK, "--os-cloud", cloud, *args]
        else:
            argv = [OPENSTACK, *auth, *args]
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        run = Run(argv, proc, time.monotonic() - t0)
        self.client_runs += 1
        self.client_seconds += run.seconds
        if check and run.rc != 0:
            self.fail(f"openstack failed:\n{run}")
        return run

    def os_json(self, *args, **kw):
        """`openstack ... -f json`, parsed."""
        run = self.openstack(*args, "-f", "json", **kw)
        try:
            return json.loads(run.out)
        except json.JSONDecodeError:
            self.fail(f"not JSON:\n{run}")

    def os_fails(self, *args, **kw):
        """`openstack ...`, which must fail; its output (stderr and stdout)."""
        run = self.openstack(*args, check=False, **kw)
        self.assertNotEqual(run.rc, 0, f"succeeded but should not have:\n{run}")
        return run.err + run.out

    def wait_for(self, what, probe):
        """Calls probe() until it returns a true value (which is returned) or STATE_DEADLINE_S pass.
        Each probe is a client run (~1 s): that is the polling interval."""
        deadline = time.monotonic() + STATE_DEADLINE_S
        last = None
        while True:
            last = probe()
            if last:
                return last
            if time.monotonic() > deadline:
                self.fail(f"{what}: not within {STATE_DEADLINE_S} s")

    def server_in(self, name_or_id, status, **kw):
        def probe():
            s = self.os_json("server", "show", name_or_id, **kw)
            if s["status"] == "ERROR":
                self.fail(f"server {name_or_id} is ERROR: {s.get('fault')}")
            return s if s["status"] == status else None
        return self.wait_for(f"server {name_or_id} {status}", probe)

    def volume_in(self, name_or_id, status, **kw):
        def probe():
            v = self.os_json("volume", "show", name_or_id, **kw)
            self.assertNotEqual(v["status"], "error", v)
            return v if v["status"] == status else None
        return self.wait_for(f"volume {name_or_id} {status}", probe)

    def gone(self, kind, name_or_id, **kw):
        """`openstack KIND show` says there is no such KIND (polled: Cinder's delete is asynchronous)."""
        def probe():
            run = self.openstack(kind, "show", name_or_id, check=False, **kw)
            return (run.err + run.out) if run.rc != 0 else None
        text = self.wait_for(f"{kind} {name_or_id} gone", probe)
        self.assertRegex(text, r"(?i)no %s|not found" % kind, text)
        return text

    def make_network(self, name, cidr, **kw):
        net = self.os_json("network", "create", name, **kw)
        subnet = self.os_json("subnet", "create", name + "-subnet", "--network", name, "--subnet-range",
                              cidr, **kw)
        return net, subnet

    def delete_network(self, net, subnet, **kw):
        self.openstack("subnet", "delete", subnet["id"], **kw)
        self.openstack("network", "delete", net["id"], **kw)
        self.gone("network", net["id"], **kw)

    def cleanup_with_cogs(self, *refs):
        """Deletes (kind, id) pairs, in order, through the cogs CLI as the admin: quicker than
        `openstack` (~1 s a run) where the OpenStack delete is not what is tested (test 2 tests it)."""
        for kind, ref in refs:
            self.cogs(kind, "delete", ref, "--wait")

    def assert_address_in(self, server, net_name, cidr):
        addrs = server["addresses"].get(net_name)
        self.assertTrue(addrs, f"no address on {net_name}: {server['addresses']}")
        for a in addrs:
            addr = a["addr"] if isinstance(a, dict) else a
            self.assertIn(ipaddress.ip_address(addr), ipaddress.ip_network(cidr), server["addresses"])
        return addrs[0]["addr"] if isinstance(addrs[0], dict) else addrs[0]

    # ---- the tests, in order

    def test_1_clouds_yaml(self):
        import yaml
        path = self.clouds_yaml
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            clouds = yaml.safe_load(f)["clouds"]
        self.assertEqual(sorted(clouds), ["cogs-admin", "cogs-demo"])
        for cloud, user, project in (("cogs-admin", "admin", "admin"), ("cogs-demo", "demo", "demo")):
            c = clouds[cloud]
            pw_file = os.path.join(self.cloud.dir, "openstack", user + ".password")
            self.assertEqual(stat.S_IMODE(os.stat(pw_file).st_mode), 0o600)
            with open(pw_file) as f:
                password = f.read().strip()
            self.assertGreaterEqual(len(password), 16)
            self.assertEqual(c["auth"], {
                "auth_url": self.cloud.api_url + "/v3", "username": user, "password": password,
                "project_name": project, "user_domain_name": "Default", "project_domain_name": "Default"})
            self.assertEqual(c["region_name"], "RegionOne")
            self.assertEqual(c["identity_api_version"], 3)
            self.assertEqual(c["interface"], "public")
            self.assertTrue(self.cloud.api_url.startswith("https://"), self.cloud.api_url)
            self.assertEqual(c["cacert"], os.path.join(self.cloud.dir, "pki", "ca.crt"))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.cloud.dir, "openstack")).st_mode), 0o700)
        self.assertIn(f"OS_CLIENT_CONFIG_FILE={path} openstack --os-cloud cogs-demo server list",
                      self.cloud.stdout)
        # The admin's cloud works too, and sees the admin project.
        token = self.os_json("token", "issue", cloud="cogs-admin")
        self.assertEqual(token["project_id"], self.project_ids["admin"])

    def test_2_demo_lifecycle(self):
        demo = self.project_ids["demo"]
        # Identity.
        token = self.os_json("token", "issue")
        self.assertEqual(token["project_id"], demo)
        self.assertTrue(token["id"] and token["user_id"], token)
        expires = datetime.datetime.strptime(token["expires"], "%Y-%m-%dT%H:%M:%S%z")
        self.assertGreater(expires, datetime.datetime.now(datetime.timezone.utc))
        # The catalog cogs dev seeded.
        flavors = {f["Name"]: f for f in self.os_json("flavor", "list")}
        self.assertLessEqual({"m1.tiny", "m1.small"}, set(flavors))
        self.assertEqual((flavors["m1.tiny"]["VCPUs"], flavors["m1.tiny"]["RAM"], flavors["m1.tiny"]["Disk"]),
                         (1, 512, 1))
        images = {i["Name"]: i for i in self.os_json("image", "list")}
        self.assertEqual(images["busybox"]["Status"], "active")

        # Network and subnet (Neutron answers them done).
        net, subnet = self.make_network("web", "10.20.0.0/24")
        self.assertEqual((net["name"], net["status"], net["project_id"]), ("web", "ACTIVE", demo))
        self.assertEqual(subnet["cidr"], "10.20.0.0/24")
        self.assertEqual(subnet["network_id"], net["id"])
        self.assertEqual(subnet["gateway_ip"], "10.20.0.1")
        self.assertEqual(subnet["allocation_pools"], [{"start": "10.20.0.2", "end": "10.20.0.254"}])
        self.assertEqual(subnet["ip_version"], 4)

        # A server, waited for by the client.
        created = self.os_json("server", "create", "--flavor", "m1.tiny", "--image", "busybox", "--network",
                               "web", "--wait", "web-1")
        self.assertEqual(created["status"], "ACTIVE", created)
        sid = created["id"]
        addr = self.assert_address_in(created, "web", "10.20.0.0/24")
        pool = subnet["allocation_pools"][0]
        self.assertTrue(ipaddress.ip_address(pool["start"]) <= ipaddress.ip_address(addr)
                        <= ipaddress.ip_address(pool["end"]), addr)
        rows = [r for r in self.os_json("server", "list") if r["ID"] == sid]
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]["Name"], rows[0]["Status"], rows[0]["Image"], rows[0]["Flavor"]),
                         ("web-1", "ACTIVE", "busybox", "m1.tiny"))
        self.assertEqual(rows[0]["Networks"], {"web": [addr]})
        shown = self.os_json("server", "show", "web-1")
        self.assertEqual((shown["id"], shown["status"], shown["project_id"]), (sid, "ACTIVE", demo))
        self.assertEqual(shown["flavor"], f"m1.tiny ({flavors['m1.tiny']['ID']})")
        self.assertEqual(shown["image"], f"busybox ({images['busybox']['ID']})")
        self.assertEqual(shown["OS-EXT-STS:power_state"], 1)  # Running
        self.assertEqual(self.assert_address_in(shown, "web", "10.20.0.0/24"), addr)

        # A volume, attached.
        vol = self.os_json("volume", "create", "--size", "1", "data-1")
        self.assertEqual((vol["name"], vol["size"]), ("data-1", 1))
        vid = vol["id"]
        self.volume_in("data-1", "available")
        self.openstack("server", "add", "volume", "web-1", "data-1")
        v = self.volume_in(vid, "in-use")
        self.assertEqual([a["server_id"] for a in v["attachments"]], [sid], v)
        self.assertIn({"id": vid}, self.os_json("server", "show", sid)["volumes_attached"])

        # Stop and start.
        self.openstack("server", "stop", "web-1")
        s = self.server_in(sid, "SHUTOFF")
        self.assertEqual(s["OS-EXT-STS:power_state"], 4)  # Shutdown (Nova's power state 4)
        self.openstack("server", "start", "web-1")
        s = self.server_in(sid, "ACTIVE")
        self.assertEqual(s["OS-EXT-STS:power_state"], 1)
        self.assertIn({"id": vid}, s["volumes_attached"])  # kept across the stop

        # Detach, delete everything.
        self.openstack("server", "remove", "volume", "web-1", "data-1")
        v = self.volume_in(vid, "available")
        self.assertEqual(v["attachments"], [])
        self.assertEqual(self.os_json("server", "show", sid)["volumes_attached"], [])
        self.openstack("server", "delete", "--wait", "web-1")
        self.gone("server", sid)
        self.openstack("volume", "delete", "data-1")
        self.gone("volume", vid)
        self.openstack("subnet", "delete", subnet["id"])
        self.gone("subnet", subnet["id"])
        self.openstack("network", "delete", "web")
        self.gone("network", net["id"])
        # Nothing of it left, as the cloud's own API sees it.
        for kind, rid in (("server", sid), ("volume", vid), ("network", net["id"])):
            self.assertNotIn(rid, [r["id"] for r in self.cogs(kind, "list")[kind + "s"]])

    def token_auth(self, token, project_id):
        return ["--os-auth-type", "token", "--os-token", token, "--os-project-id", project_id,
                "--os-auth-url", self.cloud.api_url + "/v3", "--os-cacert", self.cloud.ca,
                "--os-identity-api-version", "3"]

    def test_3_token_auth(self):
        demo = self.project_ids["demo"]
        # The token of a password login, then used alone (no clouds.yaml, no password).
        issued = self.os_json("token", "issue")["id"]
        auth = self.token_auth(issued, demo)
        token = self.os_json("token", "issue", auth=auth)
        self.assertEqual(token["project_id"], demo)
        net, subnet = self.make_network("tok", "10.30.0.0/24", auth=auth)
        self.assertEqual(net["project_id"], demo)
        s = self.os_json("server", "create", "--flavor", "m1.tiny", "--image", "busybox", "--network", "tok",
                         "--wait", "tok-1", auth=auth)
        self.assertEqual(s["status"], "ACTIVE", s)
        self.assert_address_in(s, "tok", "10.30.0.0/24")
        # The demo's password login sees what the token made: the same project.
        self.assertIn(s["id"], [r["ID"] for r in self.os_json("server", "list")])
        self.openstack("server", "delete", "--wait", s["id"], auth=auth)
        self.gone("server", s["id"], auth=auth)
        self.delete_network(net, subnet, auth=auth)

        # A cogs token the admin made for the project works the same way.
        secret = self.cogs("token", "create", "--project", "demo", "--role", "member",
                           "--name", "openstack-test")["token"]["secret"]
        auth = self.token_auth(secret, demo)
        self.assertEqual(self.os_json("token", "issue", auth=auth)["project_id"], demo)
        # A wrong one is refused by Keystone's shape (401).
        out = self.os_fails("server", "list", auth=self.token_auth("cogs_" + "0" * 48, demo))
        self.assertRegex(out, r"(?i)401|unauthori[sz]ed|authenticat", out)

    def test_4_second_tenant(self):
        # The demo tenant's server, network, subnet and volume.
        net, subnet = self.make_network("mine", "10.40.0.0/24")
        server = self.os_json("server", "create", "--flavor", "m1.tiny", "--image", "busybox", "--network",
                              "mine", "mine-1")
        sid = server["id"]
        vol = self.os_json("volume", "create", "--size", "1", "mine-vol")
        self.server_in(sid, "ACTIVE")
        self.volume_in(vol["id"], "available")

        # A second project and its member, made by the admin with the cogs CLI.
        self.cogs("project", "create", "other", "--description", "a second tenant")
        pw_file = os.path.join(self.cloud.dir, "other.password")
        password = "other-" + os.urandom(12).hex()
        with open(os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(password + "\n")
        user = self.cogs("user", "create", "otheruser", "--project", "other", "--role", "member",
                         "--password-file", pw_file)["user"]
        self.assertEqual(user["name"], "otheruser")
        self.assertNotIn("password", json.dumps(user))
        with open(self.clouds_yaml) as f:
            import yaml
            demo_cloud = yaml.safe_load(f)["clouds"]["cogs-demo"]
        other_cloud = json.loads(json.dumps(demo_cloud))
        other_cloud["auth"].update(username="otheruser", password=password, project_name="other")
        config = os.path.join(self.cloud.dir, "other-clouds.yaml")
        with open(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            json.dump({"clouds": {"other": other_cloud}}, f)  # JSON is YAML
        other = dict(cloud="other", config=config)

        other_project = self.cogs("project", "show", "other")["project"]["id"]
        self.assertEqual(self.os_json("token", "issue", **other)["project_id"], other_project)
        # Invisible: not listed, not found by id or name.
        self.assertEqual(self.os_json("server", "list", **other), [])  # its own: none yet
        for ref in (sid, "mine-1"):
            out = self.os_fails("server", "show", ref, **other)
            self.assertIn(f"No server with a name or ID of '{ref}' exists", out)
        self.assertNotIn(net["id"], [r["ID"] for r in self.os_json("network", "list", **other)])
        self.assertRegex(self.os_fails("network", "show", net["id"], **other), r"(?i)no network|not found")
        self.assertRegex(self.os_fails("subnet", "show", subnet["id"], **other), r"(?i)no subnet|not found")
        self.assertEqual(self.os_json("volume", "list", **other), [])
        self.assertIn(f"No volume with a name or ID of '{vol['id']}' exists",
                      self.os_fails("volume", "show", vol["id"], **other))
        # Cannot be deleted, attached to, or stopped by the other tenant.
        self.assertIn(sid, self.os_fails("server", "delete", sid, **other))
        self.os_fails("volume", "delete", vol["id"], **other)
        self.os_fails("network", "delete", net["id"], **other)
        # ... and the owner still has all of it, as it was.
        self.assertEqual(self.os_json("server", "show", sid)["status"], "ACTIVE")
        self.assertEqual(self.os_json("volume", "show", vol["id"])["status"], "available")
        self.assertEqual(self.os_json("network", "show", net["id"])["status"], "ACTIVE")
        self.cleanup_with_cogs(("server", sid), ("volume", vol["id"]), ("subnet", subnet["id"]),
                               ("network", net["id"]))

    def test_5_bad_input(self):
        net = self.os_json("network", "create", "bad")
        out = self.os_fails("subnet", "create", "bad-33", "--network", "bad", "--subnet-range", "10.0.0.0/33")
        self.assertIn("BadRequest", out)  # Neutron's 400
        self.assertIn("cidr", out)
        self.assertNotIn("bad-33", [r["Name"] for r in self.os_json("subnet", "list")])
        out = self.os_fails("server", "create", "--flavor", "m9.nosuch", "--image", "busybox", "--network",
                            "bad", "nosuch-flavor")
        self.assertIn("No flavor with a name or ID of 'm9.nosuch' exists", out)
        # Glance's lookup: by id (404), by name, then among hidden images (?os_hidden=True): not found.
        out = self.os_fails("server", "create", "--flavor", "m1.tiny", "--image", "nosuch-image", "--network",
                            "bad", "nosuch-image")
        self.assertIn("No Image found for nosuch-image", out)
        out = self.os_fails("server", "create", "--flavor", "m1.tiny", "--image", "busybox", "--network",
                            "bad", "x" * 300)
        self.assertIn("(HTTP 400)", out)  # Nova's shape: novaclient read the message
        self.assertIn("name", out)
        out = self.os_fails("volume", "create", "--size", "0", "zero")
        self.assertIn("(HTTP 400)", out)  # Cinder's shape
        self.assertIn("size", out)
        self.assertEqual(self.os_json("server", "list"), [])
        self.assertEqual(self.os_json("volume", "list"), [])
        self.cleanup_with_cogs(("network", net["id"]))

    def test_6_sdk_script(self):
        net, subnet = self.make_network("sdk-net", "10.60.0.0/24")
        env = dict(_base_env(), OS_CLIENT_CONFIG_FILE=self.clouds_yaml)
        argv = [PYTHON, os.path.join(SOURCE, "examples", "openstack", "sdk_server.py"), "cogs-demo", "sdk-net",
                "--name", "sdk-1"]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(proc.returncode, 0, f"{proc.stdout}\n{proc.stderr}")
        lines = proc.stdout.splitlines()
        self.assertEqual(len(lines), 3, proc.stdout)
        self.assertRegex(lines[0], r"^created server sdk-1 \([0-9a-f-]{36}\)$")
        sid = lines[0].split("(")[1].rstrip(")")
        words = lines[1].split()
        self.assertEqual(words[:-1], ["server", "sdk-1", "is", "ACTIVE", "on", "sdk-net", "at"], lines[1])
        self.assertIn(ipaddress.ip_address(words[-1]), ipaddress.ip_network("10.60.0.0/24"))
        self.assertEqual(lines[2], f"deleted server sdk-1 ({sid})")
        # Gone, for the cloud's own API as for the OpenStack one.
        self.assertNotIn(sid, [s["id"] for s in self.cogs("server", "list")["servers"]])
        self.gone("server", sid)
        # An unknown network: exit 1 saying why, nothing made.
        proc = subprocess.run(argv[:3] + ["no-such-net"], capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("no-such-net", proc.stderr)
        self.assertEqual(self.os_json("server", "list"), [])
        self.cleanup_with_cogs(("subnet", subnet["id"]), ("network", net["id"]))

    def test_7_keypair(self):
        """An imported key pair, a server booted with it (the key reaches the compute agent's
        instance: cloud_keypair_test and the compute tests check the files), and the pair deleted."""
        key = os.path.join(self.cloud.dir, "demo-key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True, timeout=60)
        with open(key + ".pub") as f:
            public = f.read().strip()
        made = self.os_json("keypair", "create", "--public-key", key + ".pub", "demo-key")
        self.assertEqual(made["name"], "demo-key")
        fingerprint = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", key + ".pub"], capture_output=True,
                                     text=True, check=True, timeout=60).stdout.split()[1]
        self.assertEqual("MD5:" + made["fingerprint"], fingerprint)
        self.assertIn("demo-key", [k["Name"] for k in self.os_json("keypair", "list")])
        self.assertEqual(self.openstack("keypair", "show", "--public-key", "demo-key").out.strip(), public)
        self.assertIn("public_key", self.os_fails("keypair", "create", "generated-key"))
        net, subnet = self.make_network("key-net", "10.61.0.0/24")
        server = self.os_json("server", "create", "--flavor", "m1.tiny", "--image", "busybox", "--network",
                              "key-net", "--key-name", "demo-key", "--wait", "key-1")
        self.assertEqual(server["status"], "ACTIVE")
        self.assertEqual(server["key_name"], "demo-key")
        self.assertIn("key_name", self.os_fails("server", "create", "--flavor", "m1.tiny", "--image", "busybox",
                                                "--network", "key-net", "--key-name", "nope", "key-2"))
        self.openstack("keypair", "delete", "demo-key")
        self.assertNotIn("demo-key", [k["Name"] for k in self.os_json("keypair", "list")])
        self.assertEqual(self.os_json("server", "show", "key-1")["key_name"], "demo-key",
                         "a server keeps its key after the pair goes, as in Nova")
        self.cleanup_with_cogs(("server", server["id"]), ("subnet", subnet["id"]), ("network", net["id"]))

    def test_8_boot_on_a_port(self):
        net, subnet = self.make_network("port-net", "10.62.0.0/24")
        port = self.os_json("port", "create", "--network", "port-net", "--fixed-ip",
                            "subnet=port-net-subnet,ip-address=10.62.0.50", "my-port")
        self.assertEqual(port["fixed_ips"][0]["ip_address"], "10.62.0.50", port)  # made when answered
        server = self.os_json("server", "create", "--flavor", "m1.tiny", "--image", "busybox", "--nic",
                              "port-id=" + port["id"], "--wait", "port-1")
        self.assertEqual(server["status"], "ACTIVE")
        self.assertEqual(self.assert_address_in(server, "port-net", "10.62.0.0/24"), "10.62.0.50")
        bound = self.os_json("port", "show", port["id"])
        self.assertEqual(bound["device_id"], server["id"])
        self.assertEqual(bound["status"], "ACTIVE")
        self.assertNotEqual(self.openstack("port", "delete", port["id"], check=False).rc, 0,
                            "a port bound to a server is not deleted")
        self.openstack("server", "delete", "--wait", server["id"])
        self.gone("server", server["id"])
        kept = self.os_json("port", "show", port["id"])
        self.assertEqual(kept["device_id"], "", kept)
        self.assertEqual(kept["status"], "DOWN", kept)  # Neutron's word for a port on no server
        self.assertEqual(kept["fixed_ips"][0]["ip_address"], "10.62.0.50", kept)
        self.openstack("port", "delete", port["id"])
        self.cleanup_with_cogs(("subnet", subnet["id"]), ("network", net["id"]))

    def test_9_restart_keeps_passwords(self):
        with open(self.clouds_yaml) as f:
            before = f.read()
        self.assertEqual(self.cloud.stop(), 0)
        # The admin's password file lost: its user is left alone, and out of clouds.yaml.
        os.remove(os.path.join(self.cloud.dir, "openstack", "admin.password"))
        self.cloud.start()
        self.assertNotIn("created user", self.cloud.stderr)
        self.assertRegex(self.cloud.stderr, r"user admin exists but .*admin\.password.*cogs-admin is left out")
        import yaml
        with open(self.clouds_yaml) as f:
            clouds = yaml.safe_load(f)["clouds"]
        self.assertEqual(sorted(clouds), ["cogs-demo"])
        demo_before = yaml.safe_load(before)["clouds"]["cogs-demo"]
        demo_after = clouds["cogs-demo"]
        self.assertEqual(demo_after["auth"]["password"], demo_before["auth"]["password"])
        self.assertEqual(demo_after["auth"]["auth_url"], self.cloud.api_url + "/v3")  # --port 0: a new port
        demo_before["auth"]["auth_url"] = demo_after["auth"]["auth_url"]
        self.assertEqual(demo_after, demo_before)
        self.assertEqual(self.os_json("token", "issue")["project_id"], self.project_ids["demo"])
        self.assertFalse(os.path.exists(os.path.join(self.cloud.dir, "openstack", "admin.password")))
        users = {u["name"] for u in self.cogs("user", "list")["users"]}
        self.assertLessEqual({"admin", "demo"}, users)


def main():
    global BIN, SOURCE
    if len(sys.argv) < 3:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    BIN, SOURCE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    missing = _clients_missing()
    if missing:
        print(f"integration.openstack: SKIPPED: the OpenStack clients are not installed: {missing}")
        return 77
    program = unittest.main(argv=sys.argv[:1] + sys.argv[3:], exit=False, verbosity=2)
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
