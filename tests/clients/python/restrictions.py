"""Issue 14's scenarios with the official Python client: all.Application.bounded, and the
restrictions a token can carry (see README, "Restrictions")."""
from _helpers import as_token, expect_error, login

admin, _ = login()
app = admin.applications.post(application={"name": "Restricted plant"})
A = app["id"]


def create(client, **body):
    return client.application_api_tokens.post(applicationId=A, apiToken=body)


# 4. all.Application.bounded: everything all.Application does except token management writes.
bounded = create(admin, name="Integrator", scope=["all.Application.bounded"])
assert bounded["scope"] == ["all.Application.bounded"], bounded
assert bounded["scopeSummary"] == "All permissions except managing API tokens", bounded
b = as_token(bounded["token"])
assert b.application.patch(applicationId=A, application={"name": "Plant B"})["name"] == "Plant B"
dev = b.devices.post(applicationId=A, device={"name": "Press", "attributes": [{"name": "t", "dataType": "number"}]})
assert b.device.get(applicationId=A, deviceId=dev["id"])["name"] == "Press"
assert b.application_api_tokens.get(applicationId=A)["totalCount"] == 1
assert b.application_api_token.get(applicationId=A, apiTokenId=bounded["id"])["name"] == "Integrator"
err = expect_error(403, b.application_api_tokens.post, applicationId=A, apiToken={"name": "x"})
assert "applicationApiTokens.post" in err["message"], err
expect_error(403, b.application_api_token.patch, applicationId=A, apiTokenId=bounded["id"],
             apiToken={"status": "inactive"})
expect_error(403, b.application_api_token.delete, applicationId=A, apiTokenId=bounded["id"])
print("bounded: ok")

# 1. A gateway token restricted to devices tagged site=north (and one device by id).
def device(name, tags):
    d = admin.devices.post(applicationId=A, device={
        "name": name, "tags": tags, "attributes": [{"name": "t", "dataType": "number"}]})
    admin.device.send_state(applicationId=A, deviceId=d["id"], deviceState={"data": {"t": 1}})
    return d["id"]


north = device("north-1", [{"key": "site", "value": "north"}])
south = device("south-1", [{"key": "site", "value": "south"}])
pinned = device("pinned", [])
gw_tok = create(admin, name="Gateway north", deviceTags=[{"key": "site", "value": "north"}],
                deviceIds=[pinned])
assert gw_tok["deviceTags"] == [{"key": "site", "value": "north"}], gw_tok
gw = as_token(gw_tok["token"])
assert gw.device.get(applicationId=A, deviceId=north)["name"] == "north-1"
expect_error(404, gw.device.get, applicationId=A, deviceId=south)
expect_error(404, gw.device.send_state, applicationId=A, deviceId=south, deviceState={"data": {"t": 5}})
expect_error(404, gw.device.send_command, applicationId=A, deviceId=south, deviceCommand={"name": "reboot"})
names = sorted(d["name"] for d in gw.devices.get(applicationId=A)["items"])
assert names == ["north-1", "pinned"], names
seen = gw.data.last_value_query(applicationId=A, query={"attribute": "t"})
assert sorted(seen.keys()) == sorted([north, pinned]), seen
admin.device.patch(applicationId=A, deviceId=south, device={"tags": [{"key": "site", "value": "north"}]})
assert gw.device.get(applicationId=A, deviceId=south)["name"] == "south-1"
admin.device.patch(applicationId=A, deviceId=north, device={"tags": []})
expect_error(404, gw.device.get, applicationId=A, deviceId=north)
print("devices: ok")

# 2. A dashboard token usable only from listed networks.
local = create(admin, name="Local dashboard", allowedAddresses=["127.0.0.0/8", "::1"])
assert local["allowedAddresses"] == ["127.0.0.0/8", "::1/128"], local
assert as_token(local["token"]).application.get(applicationId=A)["id"] == A
remote = create(admin, name="Remote dashboard", allowedAddresses=["203.0.113.0/24", "2001:db8::/32"])
err = expect_error(403, as_token(remote["token"]).application.get, applicationId=A)
assert "203.0.113.0/24, 2001:db8::/32" in err["message"] and "127.0.0.1" in err["message"], err
err = expect_error(400, create, admin, name="bad", allowedAddresses=["203.0.113.0/33"])
assert "allowedAddresses[0]" in err["message"], err
print("addresses: ok")

# 3. A vendor token limited in rate and in total uses.
vendor = create(admin, name="Vendor", rateLimit={"requests": 5, "perSeconds": 60}, usageLimit=100)
assert vendor["usesRemaining"] == 100 and vendor["rateLimit"] == {"requests": 5, "perSeconds": 60}, vendor
v = as_token(vendor["token"])
for _ in range(5):
    v.application.get(applicationId=A)
err = expect_error(429, v.application.get, applicationId=A)
assert "5 requests per 60 s" in err["message"], err
assert admin.application_api_token.get(applicationId=A, apiTokenId=vendor["id"])["usesRemaining"] == 95
few = create(admin, name="Few uses", usageLimit=3)
f = as_token(few["token"])
for _ in range(3):
    f.application.get(applicationId=A)
err = expect_error(429, f.application.get, applicationId=A)
assert err["message"].startswith("Usage limit reached"), err
assert admin.application_api_token.get(applicationId=A, apiTokenId=few["id"])["usesRemaining"] == 0
# A child of a limited token is carved out of its uses, or refused.
parent = create(admin, name="Parent", usageLimit=10)
p = as_token(parent["token"])
child = p.application_api_tokens.post(applicationId=A, apiToken={"name": "child", "usageLimit": 6})
assert child["usesRemaining"] == 6, child
err = expect_error(403, p.application_api_tokens.post, applicationId=A, apiToken={"name": "c2", "usageLimit": 6})
assert "left to give" in err["message"], err
err = expect_error(403, p.application_api_tokens.post, applicationId=A, apiToken={"name": "c3"})
assert "usage limit" in err["message"], err
print("limits: ok")
