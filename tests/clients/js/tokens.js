// Issue 3's scenario with the official JavaScript client.
const { login, asToken, expectError, run, assert } = require('./_helpers');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

run(async () => {
  const { client: admin } = await login();
  const app = await admin.applications.post({ application: { name: 'Plant floor' } });
  const other = await admin.applications.post({ application: { name: 'Other plant' } });
  const applicationId = app.id;
  const create = (client, apiToken) => client.applicationApiTokens.post({ applicationId, apiToken });

  // 1. Three tokens; the secret appears once.
  const full = await create(admin, { name: 'CI' });
  const read = await create(admin, { name: 'Dashboard vendor', scope: ['all.Application.read'] });
  const custom = await create(admin, { name: 'Dashboard queries', scope: ['data.timeSeriesQuery', 'data.lastValueQuery'] });
  assert.deepStrictEqual(full.scope, ['all.Application']);
  const listed = JSON.stringify(await admin.applicationApiTokens.get({ applicationId }));
  for (const t of [full, read, custom]) {
    assert.ok(t.token.startsWith('tgat_'));
    assert.ok(!listed.includes(t.token));
  }
  assert.ok(!('token' in (await admin.applicationApiToken.get({ applicationId, apiTokenId: custom.id }))));

  // 2. Exactly what each scope grants.
  const reader = asToken(read.token);
  const querier = asToken(custom.token);
  const root = asToken(full.token);
  assert.strictEqual((await reader.application.get({ applicationId })).id, applicationId);
  const denied = await expectError(403, reader.application.patch({ applicationId, application: { name: 'x' } }));
  assert.match(denied.message, /application\.patch/);
  await expectError(403, reader.applicationApiTokens.post({ applicationId, apiToken: { name: 'x' } }));
  const values = await querier.data.lastValueQuery({ applicationId, query: { attribute: 'temperature' } });
  assert.strictEqual(typeof values, 'object');
  await expectError(403, querier.application.get({ applicationId }));

  // 3. Tokens creating tokens.
  const child = await create(root, { name: 'Child', scope: ['application.get'] });
  assert.deepStrictEqual([child.creatorType, child.creatorId, child.creatorName], ['apiToken', full.id, 'CI']);
  assert.strictEqual((await root.application.patch({ applicationId, application: { name: 'Renamed' } })).name, 'Renamed');
  const minter = asToken((await create(admin, {
    name: 'Minter', scope: ['applicationApiTokens.post', 'application.get'], expirationDate: '2099-01-01T00:00:00.000Z',
  })).token);
  const stronger = await expectError(403, create(minter, { name: 's', scope: ['application.*'], expirationDate: '2098-01-01T00:00:00Z' }));
  assert.match(stronger.message, /more powerful than its creator/);
  const longer = await expectError(403, create(minter, { name: 's', scope: ['application.get'] }));
  assert.match(longer.message, /outlive/);

  // 4. List: sort, filter, page.
  const byName = await admin.applicationApiTokens.get({ applicationId, sortField: 'name', sortDirection: 'desc', perPage: 2 });
  assert.strictEqual(byName.count, 2);
  assert.ok(byName.items[0].name.toLowerCase() >= byName.items[1].name.toLowerCase());
  const dash = await admin.applicationApiTokens.get({ applicationId, filterField: 'name', filter: 'Dash*' });
  assert.strictEqual(dash.totalCount, 2);

  // 5. Deactivate, reactivate; scope is fixed.
  await admin.applicationApiToken.patch({ applicationId, apiTokenId: read.id, apiToken: { status: 'inactive' } });
  await expectError(401, reader.application.get({ applicationId }));
  await admin.applicationApiToken.patch({ applicationId, apiTokenId: read.id, apiToken: { status: 'active' } });
  await reader.application.get({ applicationId });
  const fixed = await expectError(400, admin.applicationApiToken.patch({ applicationId, apiTokenId: read.id, apiToken: { expirationDate: '2030-01-01T00:00:00Z' } }));
  assert.match(fixed.message, /fixed when it is created/);

  // 6. Expiry.
  const short = await create(admin, { name: 'Short', expirationDate: new Date(Date.now() + 2000).toISOString() });
  await asToken(short.token).application.get({ applicationId });
  await sleep(2200);
  await expectError(401, asToken(short.token).application.get({ applicationId }));
  await expectError(400, create(admin, { name: 'Past', expirationDate: '2020-01-01T00:00:00Z' }));

  // 7. Delete; other application; delete the application.
  await admin.applicationApiToken.delete({ applicationId, apiTokenId: child.id });
  await expectError(401, asToken(child.token).application.get({ applicationId }));
  await expectError(404, root.application.get({ applicationId: other.id }));
  await admin.application.delete({ applicationId });
  await expectError(401, root.application.get({ applicationId }));
});
