// Issue 4's scenarios with the official JavaScript client: devices, a gateway token that only
// reports state, a dashboard token that only queries data, a read-only token that reads state
// and commands, and an operator who sends commands and manages workflows.
const { login, asToken, expectError, run, assert } = require('./_helpers');

const MINUTE = 60000;

run(async () => {
  const { client: admin } = await login();
  const app = await admin.applications.post({ application: { name: 'Building' } });
  const applicationId = app.id;

  // 1. Devices with attributes and tags; list with filters and pages; read, patch, delete.
  const attributes = [
    { name: 'temperature', dataType: 'number' },
    { name: 'mode', dataType: 'string' },
  ];
  const ids = {};
  for (const [name, floor] of [['North', '3'], ['South', '3'], ['Lobby', '1']]) {
    const d = await admin.devices.post({
      applicationId,
      device: { name, tags: [{ key: 'floor', value: floor }], attributes },
    });
    assert.deepStrictEqual(d.attributes, attributes);
    ids[name] = d.id;
  }
  const page = await admin.devices.get({ applicationId, sortField: 'name', sortDirection: 'desc', perPage: 2, page: 1 });
  assert.deepStrictEqual(page.items.map((d) => d.name), ['Lobby']);
  assert.strictEqual(page.totalCount, 3);
  const floor3 = await admin.devices.get({ applicationId, tagFilter: [{ key: 'floor', value: '3' }] });
  assert.deepStrictEqual(floor3.items.map((d) => d.name), ['North', 'South']);
  const patched = await admin.device.patch({ applicationId, deviceId: ids.Lobby, device: { name: 'Entrance' } });
  assert.strictEqual(patched.name, 'Entrance');
  assert.deepStrictEqual((await admin.device.get({ applicationId, deviceId: ids.Lobby })).tags, [{ key: 'floor', value: '1' }]);
  const temp = await admin.devices.post({ applicationId, device: { name: 'Temporary' } });
  await admin.device.delete({ applicationId, deviceId: temp.id });
  await expectError(404, admin.device.get({ applicationId, deviceId: temp.id }));
  const bad = await expectError(400, admin.devices.post({ applicationId, device: { name: '' } }));
  assert.match(bad.message, /name/);

  const token = async (scope, name) => {
    const t = await admin.applicationApiTokens.post({ applicationId, apiToken: { name, scope } });
    return asToken(t.token);
  };

  // 2. A gateway that may only report state: one report, then a timed batch per device.
  const gateway = await token(['device.sendState'], 'gateway');
  const now = Date.now();
  await gateway.device.sendState({ applicationId, deviceId: ids.Lobby, deviceState: { data: { mode: 'open' } } });
  const expected = {};
  for (const [i, name] of ['North', 'South'].entries()) {
    const reports = [];
    expected[name] = [];
    for (let k = 1; k <= 40; k += 1) {
      const value = 20 + i + (k % 5);
      reports.push({ time: now - k * MINUTE, data: { temperature: value, mode: 'auto' } });
      expected[name].push([now - k * MINUTE, value]);
    }
    await gateway.device.sendState({ applicationId, deviceId: ids[name], deviceState: reports });
  }
  await expectError(403, gateway.device.getState({ applicationId, deviceId: ids.North }));
  await expectError(403, gateway.device.get({ applicationId, deviceId: ids.North }));
  await expectError(403, gateway.devices.get({ applicationId }));

  // 3. A dashboard: last hour of temperature on floor 3 at 5-minute MEAN, and last values.
  const dashboard = await token(['data.timeSeriesQuery', 'data.lastValueQuery'], 'dashboard');
  const series = await dashboard.data.timeSeriesQuery({
    applicationId,
    query: {
      end: 0,
      duration: 60 * MINUTE,
      resolution: 5 * MINUTE,
      aggregation: 'MEAN',
      attributes: ['temperature'],
      deviceTags: [{ key: 'floor', value: '3' }],
    },
  });
  assert.deepStrictEqual(Object.keys(series.devices).sort(), [ids.North, ids.South].sort());
  const start = Date.parse(series.start);
  for (const name of ['North', 'South']) {
    const buckets = new Map();
    for (const [t, v] of expected[name]) {
      if (t >= start && t < start + 60 * MINUTE) {
        const b = start + Math.floor((t - start) / (5 * MINUTE)) * 5 * MINUTE;
        buckets.set(b, (buckets.get(b) || []).concat([v]));
      }
    }
    const got = series.devices[ids[name]].points.map((p) => [Date.parse(p.time), p.data.temperature]);
    const want = [...buckets.entries()].sort((a, b) => a[0] - b[0]).map(([t, vs]) => [t, vs.reduce((a, b) => a + b, 0) / vs.length]);
    assert.strictEqual(got.length, want.length);
    got.forEach(([t, v], j) => {
      assert.strictEqual(t, want[j][0]);
      assert.ok(Math.abs(v - want[j][1]) < 1e-9, `${name} ${t}: ${v} vs ${want[j][1]}`);
    });
  }
  const last = await dashboard.data.lastValueQuery({ applicationId, query: { attribute: 'mode' } });
  assert.strictEqual(last[ids.Lobby].data.mode, 'open');
  assert.strictEqual(last[ids.North].data.mode, 'auto');
  await expectError(403, dashboard.devices.get({ applicationId }));
  await expectError(403, dashboard.device.sendState({ applicationId, deviceId: ids.North, deviceState: { data: { temperature: 1 } } }));

  // 5 (first half). An operator sends a command.
  await admin.device.sendCommand({ applicationId, deviceId: ids.North, deviceCommand: { name: 'set-mode', payload: { mode: 'eco' } } });

  // 4. A read-only token reads state and commands, but cannot report or command.
  const reader = await token(['all.Application.read'], 'reader');
  const states = await reader.device.getState({ applicationId, deviceId: ids.North, limit: 2 });
  assert.deepStrictEqual(states.map((s) => s.data.temperature), [expected.North[0][1], expected.North[1][1]]);
  const composite = await reader.device.getCompositeState({ applicationId, deviceId: ids.North });
  assert.strictEqual(composite.temperature.value, expected.North[0][1]);
  assert.strictEqual(composite.mode.value, 'auto');
  const commands = await reader.device.getCommand({ applicationId, deviceId: ids.North });
  assert.deepStrictEqual(commands.map((c) => [c.name, c.payload]), [['set-mode', { mode: 'eco' }]]);
  const refused = await expectError(403, reader.device.sendState({ applicationId, deviceId: ids.North, deviceState: { data: { temperature: 1 } } }));
  assert.match(refused.message, /device\.sendState/);
  await expectError(403, reader.device.sendCommand({ applicationId, deviceId: ids.North, deviceCommand: { name: 'x' } }));

  // 5. Workflows: create, list, disable and enable, delete.
  const flow = await admin.flows.post({
    applicationId,
    flow: {
      name: 'Eco at night',
      triggers: [{ type: 'timer', config: { cron: '0 22 * * *' }, outputIds: [['cmd']] }],
      nodes: [{ id: 'cmd', type: 'DeviceCommandNode', config: { name: 'set-mode' } }],
    },
  });
  assert.strictEqual(flow.enabled, true);
  assert.deepStrictEqual((await admin.flows.get({ applicationId })).items.map((f) => f.id), [flow.id]);
  const off = await admin.flow.patch({ applicationId, flowId: flow.id, flow: { enabled: false } });
  assert.strictEqual(off.enabled, false);
  assert.deepStrictEqual(off.nodes, flow.nodes);
  assert.strictEqual((await admin.flow.patch({ applicationId, flowId: flow.id, flow: { enabled: true } })).enabled, true);
  const invalid = await expectError(400, admin.flows.post({ applicationId, flow: { name: 'x', nodes: [{ id: 'a', type: 'X', outputIds: [['nowhere']] }] } }));
  assert.match(invalid.message, /nowhere/);
  await admin.flow.delete({ applicationId, flowId: flow.id });
  await expectError(404, admin.flow.get({ applicationId, flowId: flow.id }));
});
