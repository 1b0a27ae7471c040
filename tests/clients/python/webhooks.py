"""Issue 15, item 4 (notifications) with the official Python client: an administrator adds a
token-event webhook (an extension, sent through the client's own request method); creating,
rolling, reporting as leaked and deleting tokens POST signed events to a receiver on
loopback; the signature verifies exactly as docs/webhooks.md shows, a tampered body does
not; a receiver answering 500 is tried again and the delivery ends delivered with 2
attempts (see README, "Notifications")."""
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _helpers import URL, expect_error, login
from losant_rest import Client

received = []
answers = []
lock = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with lock:
            received.append((self.headers, body))  # case-insensitive names
            status = answers.pop(0) if answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
RECEIVER = f"http://127.0.0.1:{server.server_address[1]}/hooks/tollgate"


# The receiver's check, as docs/webhooks.md has it.
def verify(secret, header, body, tolerance=300):
    parts = dict(p.split("=", 1) for p in header.split(","))
    t = int(parts["t"])
    if abs(time.time() - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; received {len(received)}")


admin, _ = login()
app = admin.applications.post(application={"name": "Webhook plant"})
A = app["id"]
HOOKS = f"/applications/{A}/token-webhooks"

err = expect_error(400, admin.request, "POST", HOOKS, body={"url": "ftp://example.com/"})
assert "http" in err["message"], err
hook = admin.request("POST", HOOKS, body={"url": RECEIVER})
secret = hook["signingSecret"]
assert secret.startswith("tgwh_") and hook["enabled"] is True, hook
shown = admin.request("GET", f"{HOOKS}/{hook['id']}")
assert "signingSecret" not in shown and secret not in json.dumps(shown), shown
print("webhook added: ok")

token = admin.application_api_tokens.post(applicationId=A, apiToken={"name": "Gateway"})
rolled = admin.request("POST", f"/applications/{A}/tokens/{token['id']}/roll",
                       body={"overlapSeconds": 60})
anonymous = Client(url=URL)
anonymous.request("POST", "/tokens/revoke", body={"tokens": [rolled["token"]]})
admin.application_api_token.delete(applicationId=A, apiTokenId=token["id"])

wait_for("five events", lambda: len(received) >= 5)
events = []
for headers, body in received:
    sig = headers["Tollgate-Signature"]
    assert verify(secret, sig, body), sig
    assert not verify(secret, sig, body.replace(b'"type"', b'"typ\\u0065"')), "tampered body verified"
    event = json.loads(body)
    assert event["id"] == headers["Tollgate-Event-Id"], event
    assert event["applicationId"] == A, event
    assert "tgat_" not in body.decode(), "a token secret in an event"
    events.append((event["type"], event["token"]["id"]))
for expected in [("token.created", token["id"]), ("token.created", rolled["id"]),
                 ("token.rolled", token["id"]), ("token.leaked", rolled["id"]),
                 ("token.deleted", token["id"])]:
    assert expected in events, (expected, events)
assert len(received) == 5, events
print("signed events for create, roll, leak, delete: ok")

# A receiver that fails once: the event is sent again, and the delivery ends delivered.
with lock:
    answers.append(500)
before = len(received)
admin.application_api_tokens.post(applicationId=A, apiToken={"name": "Retry me"})
wait_for("a retry", lambda: len(received) >= before + 2)
(h1, b1), (h2, b2) = received[before:before + 2]
assert h1["Tollgate-Event-Id"] == h2["Tollgate-Event-Id"] and b1 == b2
event_id = h1["Tollgate-Event-Id"]


def delivered():
    page = admin.request("GET", f"{HOOKS}/{hook['id']}/deliveries")
    d = next(i for i in page["items"] if i["id"] == event_id)
    return d if d["status"] == "delivered" else None


d = wait_for("the delivery to be recorded", delivered)
assert d["attempts"] == 2 and d["lastStatusCode"] == 200, d
page = admin.request("GET", f"{HOOKS}/{hook['id']}/deliveries", params={"status": "delivered"})
assert page["totalCount"] == 6, page
print("retry until delivered: ok")

admin.request("PATCH", f"{HOOKS}/{hook['id']}", body={"enabled": False})
admin.request("DELETE", f"{HOOKS}/{hook['id']}")
expect_error(404, admin.request, "GET", f"{HOOKS}/{hook['id']}")
server.shutdown()
print("webhooks: ok")
