"""Issue 2's scenario with the official Python client: log in, read me, create an organization,
add a second (existing) user with a role, create applications owned by the organization and by
oneself, list, rename and delete them."""
from _helpers import ADMIN_EMAIL, add_user, expect_error, login

admin, admin_id = login()
me = admin.me.get()
assert me["email"] == ADMIN_EMAIL and me["id"] == admin_id, me

org = admin.orgs.post(organization={"name": "Acme Sensors", "description": "Plant floor"})
assert org["name"] == "Acme Sensors" and org["members"][0]["role"] == "admin", org
assert [o["id"] for o in admin.orgs.get()["items"]] == [org["id"]]

# A second user exists (made with the CLI while the server runs) and is invited with a role.
# The invitation is pending until they accept it, and the answer is the same shape whether or
# not the email has an account here (no user id, no name).
add_user("second@example.com", "second-password-1")
pending = admin.org.invite_member(orgId=org["id"], invite={"email": "second@example.com", "role": "collaborate"})
assert [(i["email"], i["role"]) for i in pending] == [("second@example.com", "collaborate")], pending
ghost = admin.org.invite_member(orgId=org["id"], invite={"email": "ghost@example.com", "role": "view"})
assert sorted(ghost[0].keys()) == sorted(pending[0].keys()), (ghost, pending)
assert not any("userId" in i or "firstName" in i for i in ghost), ghost
assert len(admin.org.get(orgId=org["id"])["members"]) == 1
listed = admin.org.pending_invites(orgId=org["id"])
assert sorted(i["email"] for i in listed) == ["ghost@example.com", "second@example.com"], listed
ghost_id = next(i["id"] for i in listed if i["email"] == "ghost@example.com")
left = admin.org.revoke_invite(orgId=org["id"], inviteId=ghost_id)
assert [i["email"] for i in left] == ["second@example.com"], left

second, _ = login("second@example.com", "second-password-1")
mine = second.me.invites()
assert [(i["orgName"], i["role"]) for i in mine] == [("Acme Sensors", "collaborate")], mine
answer = second.me.respond_to_invite(inviteId=mine[0]["id"], response={"action": "accept"})
assert answer == {"result": "accepted", "orgId": org["id"]}, answer
expect_error(404, second.me.respond_to_invite, inviteId=mine[0]["id"], response={"action": "accept"})
roles = {m["email"]: m["role"] for m in admin.org.get(orgId=org["id"])["members"]}
assert roles == {ADMIN_EMAIL: "admin", "second@example.com": "collaborate"}, roles

org_app = admin.applications.post(application={"name": "Line 1", "orgId": org["id"]})
own_app = admin.applications.post(application={"name": "Sandbox", "description": "mine"})
assert org_app["ownerType"] == "organization" and own_app["ownerType"] == "user"

apps = admin.applications.get(sortField="name", sortDirection="asc")
assert [a["name"] for a in apps["items"]] == ["Line 1", "Sandbox"], apps
assert apps["totalCount"] == 2
only_org = admin.applications.get(orgId=org["id"])
assert [a["id"] for a in only_org["items"]] == [org_app["id"]]

renamed = admin.application.patch(applicationId=own_app["id"], application={"name": "Sandbox 2"})
assert renamed["name"] == "Sandbox 2" and renamed["description"] == "mine"

# The collaborator sees and edits the organization's application, but may not delete it.
assert [a["name"] for a in second.applications.get()["items"]] == ["Line 1"]
second.application.patch(applicationId=org_app["id"], application={"description": "edited"})
err = expect_error(403, second.application.delete, applicationId=org_app["id"])
assert "application.delete" in err["message"], err
# The sandbox application of someone else does not exist for them.
expect_error(404, second.application.get, applicationId=own_app["id"])

# Member management.
org = admin.org.modify_member(orgId=org["id"], member={"userId": second.me.get()["id"], "role": "view"})
assert {m["email"]: m["role"] for m in org["members"]}["second@example.com"] == "view"
expect_error(403, second.application.patch, applicationId=org_app["id"], application={"name": "x"})

err = expect_error(400, admin.applications.post, application={})
assert err["type"] == "Validation" and "name" in err["message"], err

assert admin.application.delete(applicationId=own_app["id"]) == {"success": True}
expect_error(404, admin.application.get, applicationId=own_app["id"])
org = admin.org.remove_member(orgId=org["id"], userId=second.me.get()["id"])
assert len(org["members"]) == 1
assert admin.org.delete(orgId=org["id"]) == {"success": True}
expect_error(404, admin.application.get, applicationId=org_app["id"])
print("foundation scenario passed")
