#!/usr/bin/python3
"""A server's life through openstacksdk, as an SDK user writes it against any OpenStack cloud.

    sdk_server.py CLOUD NETWORK [--flavor m1.tiny] [--image busybox] [--name sdk-server]

CLOUD is an entry of clouds.yaml (found through OS_CLIENT_CONFIG_FILE, ./clouds.yaml or
~/.config/openstack/clouds.yaml; `cogs dev` writes <data-dir>/clouds.yaml with cogs-demo and
cogs-admin), NETWORK a network of that cloud's project with a subnet. The script finds the flavor,
the image and the network by name, creates a server on them, waits until it is ACTIVE, prints its
addresses, deletes it and waits until it is gone. Exit 0 when all of it worked, 1 (saying why on
stderr) when any step failed; a server it made is deleted on the way out in either case.

Run it with /usr/bin/python3 on Debian (python3-openstacksdk).
"""
import argparse
import sys

import keystoneauth1.exceptions
import openstack
import openstack.exceptions

# What a failed call raises: the SDK's own errors, and keystoneauth's (a refused login, an
# unreachable endpoint, a certificate that does not verify).
FAILURES = (openstack.exceptions.SDKException, keystoneauth1.exceptions.ClientException)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cloud", help="the clouds.yaml entry to log in with")
    parser.add_argument("network", help="the network (with a subnet) to put the server on")
    parser.add_argument("--flavor", default="m1.tiny")
    parser.add_argument("--image", default="busybox")
    parser.add_argument("--name", default="sdk-server")
    parser.add_argument("--timeout", type=int, default=120, help="seconds to wait for each state")
    args = parser.parse_args()

    try:
        conn = openstack.connect(cloud=args.cloud)  # logs in lazily, at the first call
    except FAILURES as e:
        print(f"sdk_server.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    server = None
    try:
        # find_* look a name up (or take an id); ignore_missing=False: an unknown one raises.
        flavor = conn.compute.find_flavor(args.flavor, ignore_missing=False)
        image = conn.image.find_image(args.image, ignore_missing=False)
        network = conn.network.find_network(args.network, ignore_missing=False)

        server = conn.compute.create_server(
            name=args.name, flavor_id=flavor.id, image_id=image.id, networks=[{"uuid": network.id}])
        print(f"created server {server.name} ({server.id})", flush=True)
        server = conn.compute.wait_for_server(server, status="ACTIVE", interval=1, wait=args.timeout)
        for net_name, addresses in (server.addresses or {}).items():
            for a in addresses:
                print(f"server {server.name} is {server.status} on {net_name} at {a['addr']}", flush=True)

        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=1, wait=args.timeout)
        print(f"deleted server {server.name} ({server.id})", flush=True)
        server = None
        return 0
    except FAILURES as e:
        print(f"sdk_server.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        if server is not None:  # failed half-way: leave nothing behind
            try:
                conn.compute.delete_server(server, ignore_missing=True)
            except FAILURES as e:
                print(f"sdk_server.py: could not delete server {server.id}: {e}", file=sys.stderr)
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
