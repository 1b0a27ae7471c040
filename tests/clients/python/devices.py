"""Issue 4's scenarios with the official Python client: devices, a gateway token that only
reports state, a dashboard token that only queries data, a read-only token that reads state
and commands, and an operator who sends commands and manages workflows."""
import time
from datetime import datetime

from _helpers import as_token, expect_error, login

MINUTE = 60_000


def ms(iso):
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


admin, _ = login()
app = admin.applications.post(application={"name": "Building"})
app_id = app["id"]

# 1. Devices with attributes and tags; list with filters and pages; read, patch, delete.
attributes = [
    {"name": "temperature", "dataType": "number"},
    {"name": "occupied", "dataType": "boolean"},
    {"name": "location", "dataType": "gps"},
]
devices = {}
for name, floor in [("North", "3"), ("South", "3"), ("Lobby", "1")]:
    d = admin.devices.post(applicationId=app_id, device={
        "name": name,
        "tags": [{"key": "floor", "value": floor}],
        "attributes": attributes,
    })
    assert d["name"] == name and d["attributes"] == attributes, d
    devices[name] = d["id"]
spare = admin.devices.post(applicationId=app_id, device={"name": "Spare", "deviceClass": "gateway"})

listed = admin.devices.get(applicationId=app_id, sortField="name", perPage=2, page=0)
assert [d["name"] for d in listed["items"]] == ["Lobby", "North"] and listed["totalCount"] == 4, listed
floor3 = admin.devices.get(applicationId=app_id, tagFilter=[{"key": "floor", "value": "3"}])
assert sorted(d["name"] for d in floor3["items"]) == ["North", "South"], floor3
named = admin.devices.get(applicationId=app_id, filterField="name", filter="S*")
assert sorted(d["name"] for d in named["items"]) == ["South", "Spare"], named
got = admin.device.get(applicationId=app_id, deviceId=devices["North"])
assert got["tags"] == [{"key": "floor", "value": "3"}], got
patched = admin.device.patch(applicationId=app_id, deviceId=spare["id"], device={"description": "unused"})
assert patched["description"] == "unused" and patched["deviceClass"] == "gateway", patched
admin.device.delete(applicationId=app_id, deviceId=spare["id"])
expect_error(404, admin.device.get, applicationId=app_id, deviceId=spare["id"])
err = expect_error(400, admin.devices.post, applicationId=app_id, device={"name": "x", "attributes": [{"name": "t", "dataType": "xml"}]})
assert "dataType" in err["message"], err


def token(scope, name):
    t = admin.application_api_tokens.post(applicationId=app_id, apiToken={"name": name, "scope": scope})
    return as_token(t["token"])


# 2. A gateway that may only report state: one report, then timed batches.
gateway = token(["device.sendState"], "gateway")
now = int(time.time() * 1000)
gateway.device.send_state(applicationId=app_id, deviceId=devices["Lobby"], deviceState={"data": {"temperature": 18.5}})
expected = {}  # device → [(time, temperature)]
for i, name in enumerate(["North", "South", "Lobby"]):
    reports = []
    for k in range(1, 51):
        t = now - k * MINUTE
        value = 20 + i + (k % 7) * 0.5
        reports.append({"time": t, "data": {"temperature": value, "occupied": k % 2 == 0}})
        expected.setdefault(name, []).append((t, value))
    gateway.device.send_state(applicationId=app_id, deviceId=devices[name], deviceState=reports)
err = expect_error(400, gateway.device.send_state, applicationId=app_id, deviceId=devices["North"], deviceState={"data": {"temperature": "hot"}})
assert "temperature" in err["message"], err
for call, kwargs in [
    (gateway.device.get, {"deviceId": devices["North"]}),
    (gateway.device.get_state, {"deviceId": devices["North"]}),
    (gateway.devices.get, {}),
    (gateway.data.last_value_query, {"query": {"attribute": "temperature"}}),
]:
    err = expect_error(403, call, applicationId=app_id, **kwargs)

# 3. A dashboard: the last hour of temperature on floor 3 at 5-minute MEAN, and last values.
dashboard = token(["data.timeSeriesQuery", "data.lastValueQuery"], "dashboard")
series = dashboard.data.time_series_query(applicationId=app_id, query={
    "end": 0, "duration": 60 * MINUTE, "resolution": 5 * MINUTE, "aggregation": "MEAN",
    "attributes": ["temperature"], "deviceTags": [{"key": "floor", "value": "3"}],
})
assert set(series["devices"]) == {devices["North"], devices["South"]}, series
start = ms(series["start"])
for name in ["North", "South"]:
    points = series["devices"][devices[name]]["points"]
    buckets = {}
    for t, v in expected[name]:
        if start <= t < start + 60 * MINUTE:
            buckets.setdefault((t - start) // (5 * MINUTE), []).append(v)
    want = {start + b * 5 * MINUTE: sum(vs) / len(vs) for b, vs in buckets.items()}
    got = {ms(p["time"]): p["data"]["temperature"] for p in points}
    assert got.keys() == want.keys(), (got, want)
    for t in want:
        assert abs(got[t] - want[t]) < 1e-9, (t, got[t], want[t])
last = dashboard.data.last_value_query(applicationId=app_id, query={"attribute": "temperature"})
assert last[devices["Lobby"]]["data"]["temperature"] == 18.5, last
assert last[devices["North"]]["data"]["temperature"] == expected["North"][0][1], last
expect_error(403, dashboard.devices.get, applicationId=app_id)
expect_error(403, dashboard.device.send_state, applicationId=app_id, deviceId=devices["North"], deviceState={"data": {"temperature": 1}})

# 5 (first half). An operator sends a command and reads it back.
admin.device.send_command(applicationId=app_id, deviceId=devices["North"], deviceCommand={"name": "set-point", "payload": {"celsius": 21}})
commands = admin.device.get_command(applicationId=app_id, deviceId=devices["North"])
assert commands[0]["name"] == "set-point" and commands[0]["payload"] == {"celsius": 21}, commands

# 4. A read-only token reads state and commands but cannot report or command.
reader = token(["all.Application.read"], "reader")
states = reader.device.get_state(applicationId=app_id, deviceId=devices["North"], limit=3)
assert [s["data"]["temperature"] for s in states] == [v for _, v in expected["North"][:3]], states
composite = reader.device.get_composite_state(applicationId=app_id, deviceId=devices["North"])
assert composite["temperature"]["value"] == expected["North"][0][1], composite
assert composite["occupied"]["value"] is False, composite  # k = 1 is odd
assert reader.device.get_command(applicationId=app_id, deviceId=devices["North"])[0]["name"] == "set-point"
err = expect_error(403, reader.device.send_state, applicationId=app_id, deviceId=devices["North"], deviceState={"data": {"temperature": 1}})
assert "device.sendState" in err["message"], err
expect_error(403, reader.device.send_command, applicationId=app_id, deviceId=devices["North"], deviceCommand={"name": "x"})

# 5. Workflows: create, list, disable and enable, delete.
flow = admin.flows.post(applicationId=app_id, flow={
    "name": "Too warm",
    "triggers": [{"key": devices["North"], "type": "deviceId", "outputIds": [["check"]]}],
    "nodes": [{"id": "check", "type": "ConditionNode", "config": {"expression": "{{ data.temperature }} > 25"}}],
    "globals": [{"key": "limit", "json": "25"}],
})
assert flow["enabled"] is True and flow["nodes"][0]["id"] == "check", flow
assert [f["name"] for f in admin.flows.get(applicationId=app_id)["items"]] == ["Too warm"]
off = admin.flow.patch(applicationId=app_id, flowId=flow["id"], flow={"enabled": False})
assert off["enabled"] is False and off["triggers"] == flow["triggers"], off
assert admin.flow.get(applicationId=app_id, flowId=flow["id"])["enabled"] is False
assert admin.flow.patch(applicationId=app_id, flowId=flow["id"], flow={"enabled": True})["enabled"] is True
expect_error(403, reader.flows.post, applicationId=app_id, flow={"name": "nope"})
admin.flow.delete(applicationId=app_id, flowId=flow["id"])
expect_error(404, admin.flow.get, applicationId=app_id, flowId=flow["id"])
print("passed")
