"""Issue 15, item 6 (lineage) with the official Python client: a token created by a token
names its parent; the detail counts the descendants and says they keep working without
cascade; `?cascade=true` (an extension, sent through the client's own request method)
deactivates or deletes the whole subtree, each token refused at once; a token cascades only
over tokens it could have created (see README, "Lineage")."""
from _helpers import as_token, expect_error, login

admin, _ = login()
app = admin.applications.post(application={"name": "Lineage plant"})
A = app["id"]
TOKENS = f"/applications/{A}/tokens"


def mint(client, **body):
    return client.application_api_tokens.post(applicationId=A, apiToken=body)


def works(secret):
    try:
        as_token(secret).application.get(applicationId=A)
        return True
    except Exception as err:  # LosantError
        assert err.status == 401, (err.status, err.data)
        return False


# A parent made by the admin; it mints a child, which mints a grandchild.
parent = mint(admin, name="CI root")
child = mint(as_token(parent["token"]), name="CI job")
grandchild = mint(as_token(child["token"]), name="CI step")
assert child["parentApiTokenId"] == parent["id"] and child["creatorType"] == "apiToken", child
assert grandchild["parentApiTokenId"] == child["id"], grandchild
assert "parentApiTokenId" not in parent, parent

detail = admin.application_api_token.get(applicationId=A, apiTokenId=parent["id"])
assert detail["lineage"]["childCount"] == 1, detail["lineage"]
assert detail["lineage"]["descendantCount"] == 2, detail["lineage"]
assert detail["lineage"]["descendantsWithoutCascade"] == "keepWorking", detail["lineage"]
desc = admin.request("GET", f"{TOKENS}/{parent['id']}/descendants")
assert [(i["name"], i["depth"]) for i in desc["items"]] == [("CI job", 1), ("CI step", 2)], desc
assert desc["totalCount"] == 2, desc
print("lineage shown: ok")

# Without cascade, switching the parent off leaves its children working.
admin.application_api_token.patch(applicationId=A, apiTokenId=parent["id"], apiToken={"status": "inactive"})
assert not works(parent["token"])
assert works(child["token"]) and works(grandchild["token"])
admin.application_api_token.patch(applicationId=A, apiTokenId=parent["id"], apiToken={"status": "active"})
assert works(parent["token"])
print("no cascade: ok")

# With cascade: the whole subtree stops at once.
done = admin.request("PATCH", f"{TOKENS}/{parent['id']}", params={"cascade": "true"},
                            body={"status": "inactive"})
assert done["status"] == "inactive" and done["cascade"]["count"] == 2, done
assert sorted(done["cascade"]["apiTokenIds"]) == sorted([child["id"], grandchild["id"]]), done
for t in (parent, child, grandchild):
    assert not works(t["token"]), t["name"]
got = admin.application_api_token.get(applicationId=A, apiTokenId=grandchild["id"])
assert got["status"] == "inactive" and parent["id"] in got["deactivationReason"], got
err = expect_error(400, admin.request, "PATCH", f"{TOKENS}/{parent['id']}",
                   params={"cascade": "true"}, body={"status": "active"})
assert "cascade=true" in err["message"], err
print("cascade deactivation: ok")

# A manager token may cascade only over tokens it could have created: it cannot cascade
# from a token broader than itself, and it can from its own narrower child.
manager = mint(admin, name="Manager",
               scope=["applicationApiTokens.post", "applicationApiToken.*", "application.get"])
m = as_token(manager["token"])
broad = mint(admin, name="Broad")
broad_kid = mint(as_token(broad["token"]), name="Broad kid")
err = expect_error(403, m.request, "DELETE", f"{TOKENS}/{broad['id']}", params={"cascade": "true"})
assert "more powerful" in err["message"], err
assert works(broad["token"]) and works(broad_kid["token"])
narrow = mint(m, name="Reader", scope=["application.get"])
gone = m.request("DELETE", f"{TOKENS}/{narrow['id']}", params={"cascade": "true"})
assert gone["success"] is True and gone["cascade"]["count"] == 0, gone
expect_error(404, admin.application_api_token.get, applicationId=A, apiTokenId=narrow["id"])

# A deletion with cascade by the admin: the subtree is gone.
gone = admin.request("DELETE", f"{TOKENS}/{broad['id']}", params={"cascade": "true"})
assert gone["cascade"]["apiTokenIds"] == [broad_kid["id"]], gone
assert not works(broad["token"]) and not works(broad_kid["token"])
expect_error(404, admin.application_api_token.get, applicationId=A, apiTokenId=broad_kid["id"])
print("cascade deletion and authority: ok")
