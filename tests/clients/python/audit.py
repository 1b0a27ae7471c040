"""Issue 13's audit log scenario with the official Python client: an organization admin and an
application token make changes (tokens created, changed, deleted; a device created and
deleted; a member's invitation), and the admin reads the organization's log with
auditLogs.get — sorted, paged, filtered by target, actor, request and time — and one entry
with auditLog.get; a sandbox application's owner reads that application's log through the
extension applicationAuditLogs.get. No secret appears in any entry."""
import time
from datetime import datetime, timezone

from _helpers import ADMIN_PASSWORD, as_token, expect_error, login

admin, admin_id = login()
session_secret = admin.auth_token
org = admin.orgs.post(organization={"name": "Acme"})
O = org["id"]
app = admin.applications.post(application={"name": "Plant floor", "orgId": O})
A = app["id"]
time.sleep(0.01)
started = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
time.sleep(0.01)


def tokens_post(client, **body):
    return client.application_api_tokens.post(applicationId=A, apiToken=body)


# Changes by the admin, and by a token (which is then named as the actor, with its id).
ci = tokens_post(admin, name="CI")
root = as_token(ci["token"])
child = tokens_post(root, name="Child", scope=["device.get"])
device = root.devices.post(applicationId=A, device={"name": "pump", "attributes": [
    {"name": "temperature", "dataType": "number"}]})
root.device.delete(applicationId=A, deviceId=device["id"])
root.application_api_token.patch(applicationId=A, apiTokenId=child["id"],
                                  apiToken={"status": "inactive"})
admin.application_api_token.delete(applicationId=A, apiTokenId=child["id"])
admin.org.invite_member(orgId=O, invite={"email": "new@example.com", "role": "view"})
secrets = [ci["token"], child["token"], session_secret, ADMIN_PASSWORD]

# The whole log, newest first by default: every change, each once.
log = admin.audit_logs.get(orgId=O, perPage=100)
actions = [f'{e["requestResource"]}.{e["requestAction"]}' for e in log["items"]]
assert actions == [
    "org.inviteMember",
    "applicationApiToken.delete",
    "applicationApiToken.patch",
    "device.delete",
    "devices.post",
    "applicationApiTokens.post",
    "applicationApiTokens.post",
    "applications.post",
], actions
assert log["totalCount"] == 8 and log["sortField"] == "creationDate" and log["sortDirection"] == "desc", log
for entry in log["items"]:
    assert entry["orgId"] == O and entry["clientAddress"] == "127.0.0.1", entry
    assert not any(s in str(entry) for s in secrets), entry
patch = log["items"][2]
assert (patch["actorType"], patch["actorId"], patch["actorName"]) == ("ApiToken", ci["id"], "CI"), patch
assert (patch["primaryTargetType"], patch["primaryTargetId"], patch["primaryTargetName"]) == (
    "Application", A, "Plant floor"), patch
assert (patch["secondaryTargetType"], patch["secondaryTargetId"], patch["secondaryTargetName"]) == (
    "ApiToken", child["id"], "Child"), patch
assert patch["requestBody"] == {"status": "inactive"}, patch
created = log["items"][6]
assert created["actorType"] == "User" and created["actorId"] == admin_id, created
assert created["requestBody"]["name"] == "CI" and created["responseStatus"] == 201, created

# Paging, ascending.
first = admin.audit_logs.get(orgId=O, sortField="creationDate", sortDirection="asc", perPage=3, page=0)
last = admin.audit_logs.get(orgId=O, sortField="creationDate", sortDirection="asc", perPage=3, page=2)
assert [e["requestAction"] for e in first["items"]] == ["post", "post", "post"], first
assert first["count"] == 3 and last["count"] == 2 and last["totalCount"] == 8, last
assert last["items"][-1]["requestResource"] == "org", last

# Filters: by secondary target, by actor (the token), by request, by time.
by_target = admin.audit_logs.get(orgId=O, auditLogFilter={
    "secondaryTarget": [{"type": "ApiToken", "id": child["id"]}]})
assert [e["requestAction"] for e in by_target["items"]] == ["delete", "patch", "post"], by_target
by_actor = admin.audit_logs.get(orgId=O, auditLogFilter={"actor": [{"id": ci["id"]}]})
assert by_actor["totalCount"] == 4, by_actor
assert all(e["actorName"] == "CI" for e in by_actor["items"])
deletions = admin.audit_logs.get(orgId=O, auditLogFilter={
    "request": [{"action": "delete"}], "actor": [{"type": "User"}]})
assert [e["requestResource"] for e in deletions["items"]] == ["applicationApiToken"], deletions
invites = admin.audit_logs.get(orgId=O, auditLogFilter={"primaryTarget": [{"type": "OrgInvite"}]})
assert invites["totalCount"] == 1 and invites["items"][0]["primaryTargetName"] == "new@example.com"
assert admin.audit_logs.get(orgId=O, start=started)["totalCount"] == 7
future = int(time.time() * 1000) + 3_600_000
assert admin.audit_logs.get(orgId=O, start=str(future))["totalCount"] == 0
err = expect_error(400, admin.audit_logs.get, orgId=O, sortField="secret")
assert "sortField must be one of creationDate, responseStatus, actorName" in err["message"], err

# One entry; one of another log is not found.
one = admin.audit_log.get(orgId=O, auditLogId=patch["id"])
assert one == patch, (one, patch)
other_org = admin.orgs.post(organization={"name": "Other"})
expect_error(404, admin.audit_log.get, orgId=other_org["id"], auditLogId=patch["id"])

# Application tokens never read an organization's log.
expect_error(403, root.audit_logs.get, orgId=O)

# A sandbox application (no organization): its owner reads its log through the extension.
sandbox = admin.applications.post(application={"name": "Sandbox"})
S = sandbox["id"]
t = admin.application_api_tokens.post(applicationId=S, apiToken={"name": "Kiosk"})
admin.application_api_token.delete(applicationId=S, apiTokenId=t["id"])
own = admin.request("GET", f"/applications/{S}/audit-logs", params={"perPage": "1", "page": "0"})
assert own["totalCount"] == 3 and own["count"] == 1, own
assert own["items"][0]["requestAction"] == "delete" and "orgId" not in own["items"][0], own
assert t["token"] not in str(own)
# The organization's log does not hold the sandbox's entries.
assert admin.audit_logs.get(orgId=O)["totalCount"] == 8
print("ok")
