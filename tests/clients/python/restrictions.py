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
