"""Issue 16's accounts scenario with the official Python client: change the name and the
password (every other session ends), turn on two-factor authentication with a TOTP code
computed from the key the server returned, log in with a code and with a recovery code (each
once), and turn it off again."""
import base64
import hashlib
import hmac
import struct
import time

from _helpers import ADMIN_EMAIL, ADMIN_PASSWORD, URL, expect_error, login
from losant_rest import Client


def totp(key, at=None, step=30, digits=6):
    """RFC 6238 (HMAC-SHA1), written out here so the test does not share the server's code."""
    secret = base64.b32decode(key + "=" * (-len(key) % 8))
    counter = int((time.time() if at is None else at) // step)
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


admin, admin_id = login()
other, _ = login()
assert other.me.get()["id"] == admin_id

me = admin.me.patch(user={"firstName": "Ada", "lastName": "Admin"})
assert me["fullName"] == "Ada Admin", me
err = expect_error(400, admin.me.patch, user={"email": "new@example.com"})
assert "email is not supported" in err["message"], err

# The password: the current one is required; every other session ends at once.
err = expect_error(400, admin.me.change_password, data={"password": "not-the-password", "newPassword": "Better-passw0rd!"})
assert err["message"] == "The current password is not right", err
NEW = "Better-passw0rd!"
resp = admin.me.change_password(data={"password": ADMIN_PASSWORD, "newPassword": NEW})
assert resp["token"].startswith("tgus_") and resp["userId"] == admin_id, resp
expect_error(401, other.me.get)
assert admin.me.get()["id"] == admin_id  # this session goes on
expect_error(401, login, ADMIN_EMAIL, ADMIN_PASSWORD)
admin, _ = login(ADMIN_EMAIL, NEW)
second, _ = login(ADMIN_EMAIL, NEW)

# Two-factor authentication.
info = admin.me.generate_two_factor_auth()
key = info["key"]
assert len(key) == 52 and info["keyUri"].startswith("otpauth://totp/Tollgate:"), info
now = time.time()
err = expect_error(400, admin.me.enable_two_factor_auth, data={"password": NEW, "twoFactorCode": "000000"})
assert "twoFactorCode" in err["message"], err
me = admin.me.enable_two_factor_auth(data={"password": NEW, "twoFactorCode": totp(key, now), "twoFactorAuthKey": key})
assert me["twoFactorAuthEnabled"] is True, me
codes = me["twoFactorRecoveryCodes"]
assert len(codes) == 10, codes
expect_error(401, second.me.get)  # opened without the second factor: ended
assert admin.me.get()["twoFactorAuthEnabled"] is True
assert "twoFactorRecoveryCodes" not in admin.me.get()

err = expect_error(401, login, ADMIN_EMAIL, NEW)
assert "twoFactorCode" in err["message"], err
c = Client(url=URL)
# The enabling code's time step is used up; the next step's code works once.
expect_error(401, c.auth.authenticate_user, credentials={"email": ADMIN_EMAIL, "password": NEW, "twoFactorCode": totp(key, now)})
nxt = totp(key, now + 30)
session = c.auth.authenticate_user(credentials={"email": ADMIN_EMAIL, "password": NEW, "twoFactorCode": nxt})
assert session["token"].startswith("tgus_"), session
expect_error(401, c.auth.authenticate_user, credentials={"email": ADMIN_EMAIL, "password": NEW, "twoFactorCode": nxt})
# A recovery code works once.
session = c.auth.authenticate_user(credentials={"email": ADMIN_EMAIL, "password": NEW, "twoFactorCode": codes[0]})
assert session["token"].startswith("tgus_")
expect_error(401, c.auth.authenticate_user, credentials={"email": ADMIN_EMAIL, "password": NEW, "twoFactorCode": codes[0]})

me = admin.me.disable_two_factor_auth(data={"password": NEW, "twoFactorCode": codes[1]})
assert me["twoFactorAuthEnabled"] is False, me
login(ADMIN_EMAIL, NEW)
print("accounts scenario passed")
