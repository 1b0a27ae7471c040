"""Shared set-up for the Python client scenarios (see crates/tollgate-server/tests/official_clients.rs)."""
import os
import subprocess

from losant_rest import Client
from losant_rest.losant_error import LosantError

URL = os.environ["TOLLGATE_URL"]
ADMIN_EMAIL = os.environ["TOLLGATE_ADMIN_EMAIL"]
ADMIN_PASSWORD = os.environ["TOLLGATE_ADMIN_PASSWORD"]


def login(email=ADMIN_EMAIL, password=ADMIN_PASSWORD):
    """A client logged in as a user, through auth.authenticate_user."""
    client = Client(url=URL)
    resp = client.auth.authenticate_user(credentials={"email": email, "password": password})
    assert resp["token"].startswith("tgus_"), resp
    client.auth_token = resp["token"]
    return client, resp["userId"]


def as_token(secret):
    """A client that authenticates with an application API token."""
    return Client(auth_token=secret, url=URL)


def add_user(email, password):
    """Create a user with the CLI while the server runs on the same database."""
    subprocess.run(
        [os.environ["TOLLGATE_BIN"], "user", "add", "--email", email, "--password", password],
        env={**os.environ, "TOLLGATE_DATABASE_URL": os.environ["TOLLGATE_DATABASE_URL"]},
        check=True,
        capture_output=True,
    )


def expect_error(status, fn, *args, **kwargs):
    """Call fn and require a LosantError with this status; return the error body."""
    try:
        result = fn(*args, **kwargs)
    except LosantError as err:
        assert err.status == status, (err.status, err.data)
        return err.data
    raise AssertionError(f"expected HTTP {status}, got success: {result}")
