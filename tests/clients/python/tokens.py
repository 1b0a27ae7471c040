"""Issue 3's scenario with the official Python client: application API tokens, created, used
within exactly their scope, refused when stronger or longer-lived than their creator, listed,
switched off and on, expiring, deleted."""
import time
from datetime import datetime, timedelta, timezone

from _helpers import as_token, expect_error, login

admin, _ = login()
app = admin.applications.post(application={"name": "Plant floor"})
other_app = admin.applications.post(application={"name": "Other plant"})
A = app["id"]


def create(client, **body):
    return client.application_api_tokens.post(applicationId=A, apiToken=body)


# 1. Three tokens; each secret is in its creation response and nowhere after.
full = create(admin, name="CI")
read = create(admin, name="Dashboard vendor", scope=["all.Application.read"])
custom = create(admin, name="Dashboard queries", scope=["data.timeSeriesQuery", "data.lastValueQuery"])
assert full["scope"] == ["all.Application"] and full["scopeSummary"] == "All permissions", full
assert read["scopeSummary"] == "Read only" and custom["scopeSummary"] == "Custom permissions"
secrets = [t["token"] for t in (full, read, custom)]
assert all(s.startswith("tgat_") for s in secrets)
listed = admin.application_api_tokens.get(applicationId=A)
assert listed["totalCount"] == 3
again = admin.application_api_token.get(applicationId=A, apiTokenId=full["id"])
for body in (str(listed), str(again)):
    assert "'token'" not in body and not any(s in body for s in secrets), body

# 2. Exactly what each scope grants.
reader, querier, root = as_token(read["token"]), as_token(custom["token"]), as_token(full["token"])
assert reader.application.get(applicationId=A)["name"] == "Plant floor"
assert reader.application_api_tokens.get(applicationId=A)["totalCount"] == 3
err = expect_error(403, reader.application.patch, applicationId=A, application={"name": "x"})
assert "application.patch" in err["message"], err
err = expect_error(403, reader.application_api_tokens.post, applicationId=A, apiToken={"name": "x"})
assert "applicationApiTokens.post" in err["message"], err
query = {"start": -3600000, "end": 0, "resolution": 300000, "aggregation": "MEAN", "attributes": ["temperature"]}
assert "devices" in querier.data.time_series_query(applicationId=A, query=query)
err = expect_error(403, querier.application.get, applicationId=A)
assert "application.get" in err["message"], err

# 3. A token creates a token (and is its recorded creator); the all-permissions token renames
#    the application; stronger or longer-lived children are refused with the reason.
child = create(root, name="Child of CI", scope=["application.get"])
assert (child["creatorType"], child["creatorId"], child["creatorName"]) == ("apiToken", full["id"], "CI"), child
assert root.application.patch(applicationId=A, application={"name": "Plant floor 2"})["name"] == "Plant floor 2"
minter = create(admin, name="Minter", scope=["applicationApiTokens.post", "application.get"],
                expirationDate="2099-01-01T00:00:00.000Z")
m = as_token(minter["token"])
err = expect_error(403, m.application_api_tokens.post, applicationId=A,
                   apiToken={"name": "s", "expirationDate": "2098-01-01T00:00:00Z"})
assert "more powerful than its creator" in err["message"] and "all.Application" in err["message"], err
err = expect_error(403, m.application_api_tokens.post, applicationId=A,
                   apiToken={"name": "s", "scope": ["application.get"]})
assert "outlive" in err["message"], err
ok = m.application_api_tokens.post(applicationId=A, apiToken={
    "name": "narrow", "scope": ["application.get"], "expirationDate": "2098-01-01T00:00:00.000Z"})
assert ok["creatorName"] == "Minter"

# 4. The list: sort, filter, page.
names = [t["name"] for t in admin.application_api_tokens.get(applicationId=A, sortField="name")["items"]]
assert names == sorted(names, key=str.lower), names
desc = admin.application_api_tokens.get(applicationId=A, sortField="name", sortDirection="desc")["items"]
assert [t["name"] for t in desc] == names[::-1]
dash = admin.application_api_tokens.get(applicationId=A, filterField="name", filter="Dashboard*")
assert sorted(t["name"] for t in dash["items"]) == ["Dashboard queries", "Dashboard vendor"]
page = admin.application_api_tokens.get(applicationId=A, sortField="name", perPage=2, page=1)
assert [t["name"] for t in page["items"]] == names[2:4] and page["totalCount"] == len(names)
for field in ("status", "id", "creationDate", "lastUpdated", "expirationDate"):
    assert admin.application_api_tokens.get(applicationId=A, sortField=field)["sortField"] == field

# 5. PATCH: rename, describe, deactivate (the next request is refused), reactivate.
p = admin.application_api_token.patch(applicationId=A, apiTokenId=read["id"],
                                      apiToken={"name": "Vendor", "description": "read only"})
assert (p["name"], p["description"]) == ("Vendor", "read only")
admin.application_api_token.patch(applicationId=A, apiTokenId=read["id"], apiToken={"status": "inactive"})
expect_error(401, reader.application.get, applicationId=A)
inactive = admin.application_api_tokens.get(applicationId=A, filterField="status", filter="inactive")
assert [t["id"] for t in inactive["items"]] == [read["id"]]
admin.application_api_token.patch(applicationId=A, apiTokenId=read["id"], apiToken={"status": "active"})
assert reader.application.get(applicationId=A)["id"] == A
err = expect_error(400, admin.application_api_token.patch, applicationId=A, apiTokenId=read["id"],
                   apiToken={"scope": ["all.Application"]})
assert "fixed when it is created" in err["message"], err

# 6. Expiry.
soon = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
short = create(admin, name="Short-lived", expirationDate=soon)
assert as_token(short["token"]).application.get(applicationId=A)["id"] == A
time.sleep(2.2)
err = expect_error(401, as_token(short["token"]).application.get, applicationId=A)
assert "expired" in err["message"], err
err = expect_error(400, create, admin, name="Past", expirationDate="2020-01-01T00:00:00Z")
assert "in the past" in err["message"], err
assert "expirationDate" not in full

# 7. Deletion, other applications, deleting the application.
assert admin.application_api_token.delete(applicationId=A, apiTokenId=child["id"]) == {"success": True}
expect_error(401, as_token(child["token"]).application.get, applicationId=A)
for call, kwargs in [(root.application.get, {}), (root.application_api_tokens.get, {}),
                     (root.devices.get, {})]:
    expect_error(404, call, applicationId=other_app["id"], **kwargs)
admin.application.delete(applicationId=A)
expect_error(401, root.application.get, applicationId=A)
print("tokens scenario passed")
