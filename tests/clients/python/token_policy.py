"""Issue 15, item 2 (token policies) with the official Python client: the client has no
method for the policy extension, so it is read and changed through the client's own request
method; new tokens that break it are refused with 400 naming the rule; the tokens breaking a
stricter policy are listed and keep working; an idle period (3 seconds here; the harness
runs the background jobs every 200 ms) deactivates an unused token with the reason "idle",
and the ordinary PATCH switches it on again (see README, "Token policies")."""
import time
from datetime import datetime, timedelta, timezone

from _helpers import as_token, expect_error, login

admin, _ = login()
app = admin.applications.post(application={"name": "Policy plant"})
A = app["id"]
POLICY = f"/applications/{A}/token-policy"


def iso(days):
    t = datetime.now(timezone.utc) + timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def works(secret):
    try:
        as_token(secret).application.get(applicationId=A)
        return True
    except Exception as err:  # LosantError
        assert err.status == 401, (err.status, err.data)
        return False


forever = admin.application_api_tokens.post(applicationId=A, apiToken={"name": "forever"})

p = admin.request("GET", POLICY)
assert p["maxLifetimeDays"] is None and p["warningLeadDays"] == [30, 7, 1], p
assert p["sources"]["maxLifetimeDays"] == "default", p

p = admin.request("PATCH", POLICY, body={"maxLifetimeDays": 30})
assert p["maxLifetimeDays"] == 30 and p["sources"]["maxLifetimeDays"] == "application", p
assert [v["name"] for v in p["violators"]] == ["forever"], p
assert p["violators"][0]["rules"] == ["maxLifetimeDays"], p
assert works(forever["token"]), "a policy change does not touch existing tokens"
print("policy set, violator listed: ok")

err = expect_error(400, admin.application_api_tokens.post, applicationId=A,
                   apiToken={"name": "too long", "expirationDate": iso(45)})
assert "maxLifetimeDays: 30" in err["message"], err
err = expect_error(400, admin.application_api_tokens.post, applicationId=A,
                   apiToken={"name": "never"})
assert "never expires" in err["message"], err
ok = admin.application_api_tokens.post(applicationId=A,
                                       apiToken={"name": "month", "expirationDate": iso(20)})
assert ok["name"] == "month", ok
err = expect_error(400, admin.request, "PATCH", POLICY, body={"maxLifetimeDays": -1})
assert "maxLifetimeDays" in err["message"], err
assert admin.request("GET", POLICY)["maxLifetimeDays"] == 30
print("creation refused naming the rule: ok")

# Idle deactivation after 3 seconds without use.
admin.request("PATCH", POLICY, body={"maxLifetimeDays": None, "idleDeactivationDays": 3 / 86400})
idle = admin.application_api_tokens.post(applicationId=A, apiToken={"name": "idle"})
deadline = time.time() + 60
while True:
    got = admin.application_api_token.get(applicationId=A, apiTokenId=idle["id"])
    if got["status"] == "inactive":
        break
    assert time.time() < deadline, got
    time.sleep(0.2)
assert got["deactivationReason"] == "idle", got
assert not works(idle["token"])
log = admin.request("GET", f"/applications/{A}/audit-logs", params={"perPage": "1000"})
actions = [(f'{e["requestResource"]}.{e["requestAction"]}', e.get("actorName"))
           for e in log["items"] if e.get("secondaryTargetId") == idle["id"]]
assert ("applicationApiToken.idleDeactivated", "tollgate") in actions, actions
print("idle token deactivated with its reason: ok")

admin.request("PATCH", POLICY, body={"idleDeactivationDays": None})
back = admin.application_api_token.patch(applicationId=A, apiTokenId=idle["id"],
                                         apiToken={"status": "active"})
assert back["status"] == "active" and "deactivationReason" not in back, back
assert works(idle["token"])
print("reactivated by the ordinary patch: ok")
