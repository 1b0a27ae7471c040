#!/usr/bin/env python3
"""Revocation propagation delay between Tollgate nodes (used by scripts/bench-scaleout.sh).

usage: bench-propagation.py URL_A URL_B COUNT   (admin credentials in TOLLGATE_ADMIN_EMAIL and
TOLLGATE_ADMIN_PASSWORD)
       bench-propagation.py setup URL           creates an application and a token through URL
                                                and prints "APP_ID TOKEN" (for the load test)

For each of COUNT tokens created through node A: use it twice through node B (so B has it
cached), deactivate it through A (PATCH status=inactive), and poll B over a kept-alive
connection until B answers 401. The delay is measured from A's 200 to B's first 401, and
also from the moment the PATCH was sent. Prints median, 90th percentile and worst.
"""
import http.client
import json
import os
import statistics
import sys
import time
from urllib.parse import urlparse


class Node:
    def __init__(self, url):
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    def call(self, method, path, token=None, body=None):
        headers = {"Accept": "application/json"}
        data = None
        if token:
            headers["Authorization"] = "Bearer " + token
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


def expect(status, got):
    if got[0] != status:
        sys.exit(f"expected {status}, got {got}")
    return got[1]


def admin_session(node):
    login = {"email": os.environ["TOLLGATE_ADMIN_EMAIL"], "password": os.environ["TOLLGATE_ADMIN_PASSWORD"]}
    return expect(200, node.call("POST", "/auth/user", body=login))["token"]


def setup(url):
    node = Node(url)
    session = admin_session(node)
    app = expect(201, node.call("POST", "/applications", session, {"name": "load"}))["id"]
    t = expect(201, node.call("POST", f"/applications/{app}/tokens", session,
                              {"name": "load", "scope": ["application.get"]}))
    expect(200, node.call("GET", f"/applications/{app}", t["token"]))
    print(app, t["token"])


def main():
    if sys.argv[1] == "setup":
        return setup(sys.argv[2])
    url_a, url_b, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    a, b = Node(url_a), Node(url_b)
    session = admin_session(a)
    app = expect(201, a.call("POST", "/applications", session, {"name": "propagation"}))["id"]
    tokens = []
    for i in range(count):
        t = expect(201, a.call("POST", f"/applications/{app}/tokens", session, {"name": f"p{i}"}))
        tokens.append((t["id"], t["token"]))
    from_ack, from_send, polls = [], [], []
    for tid, secret in tokens:
        for _ in range(2):
            expect(200, b.call("GET", f"/applications/{app}", secret))
        sent = time.perf_counter()
        expect(200, a.call("PATCH", f"/applications/{app}/tokens/{tid}", session, {"status": "inactive"}))
        acked = time.perf_counter()
        n = 0
        while True:
            n += 1
            status, _ = b.call("GET", f"/applications/{app}", secret)
            if status == 401:
                break
            if status != 200:
                sys.exit(f"unexpected {status} from B")
            if time.perf_counter() - acked > 10:
                sys.exit("B still accepts a token revoked 10 s ago")
        refused = time.perf_counter()
        from_ack.append((refused - acked) * 1000)
        from_send.append((refused - sent) * 1000)
        polls.append(n)

    def summary(xs):
        xs = sorted(xs)
        return (f"median {statistics.median(xs):.2f} ms, p90 {xs[int(len(xs) * 0.9) - 1]:.2f} ms, "
                f"worst {xs[-1]:.2f} ms")

    print(f"revocations: {count}")
    print(f"A's 200 -> B's first 401:   {summary(from_ack)}")
    print(f"PATCH sent -> B's first 401: {summary(from_send)}")
    print(f"refused on B's first request after A's 200: {sum(1 for p in polls if p == 1)} of {count}")


if __name__ == "__main__":
    main()
