// Issue 2's scenario with the official JavaScript client.
const { URL, ADMIN_EMAIL, login, addUser, expectError, run, assert } = require('./_helpers');

run(async () => {
  const { client: admin, userId } = await login();
  const me = await admin.me.get();
  assert.strictEqual(me.email, ADMIN_EMAIL);
  assert.strictEqual(me.id, userId);

  let org = await admin.orgs.post({ organization: { name: 'Acme Sensors' } });
  assert.strictEqual(org.members[0].role, 'admin');

  addUser('second@example.com', 'second-password-1');
  // Pending until accepted; the same answer whether or not the email has an account.
  const pending = await admin.org.inviteMember({ orgId: org.id, invite: { email: 'second@example.com', role: 'edit' } });
  assert.deepStrictEqual(pending.map((i) => [i.email, i.role]), [['second@example.com', 'edit']]);
  const nobody = await admin.org.inviteMember({ orgId: org.id, invite: { email: 'nobody@example.com', role: 'view' } });
  assert.deepStrictEqual(Object.keys(nobody[1]).sort(), Object.keys(pending[0]).sort());
  {
    // This client has no me.invites / me.respondToInvite: plain HTTP, same paths.
    const { token } = await login('second@example.com', 'second-password-1');
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const mine = await (await fetch(`${URL}/me/invites`, { headers })).json();
    const reply = await fetch(`${URL}/me/invites/${mine[0].id}`, {
      method: 'POST', headers, body: JSON.stringify({ action: 'accept' }),
    });
    assert.deepStrictEqual(await reply.json(), { result: 'accepted', orgId: org.id });
  }
  org = await admin.org.get({ orgId: org.id });
  assert.deepStrictEqual(
    Object.fromEntries(org.members.map((m) => [m.email, m.role])),
    { [ADMIN_EMAIL]: 'admin', 'second@example.com': 'edit' },
  );

  const orgApp = await admin.applications.post({ application: { name: 'Line 1', orgId: org.id } });
  const ownApp = await admin.applications.post({ application: { name: 'Sandbox' } });
  const apps = await admin.applications.get({ sortField: 'name', sortDirection: 'desc' });
  assert.deepStrictEqual(apps.items.map((a) => a.name), ['Sandbox', 'Line 1']);

  const renamed = await admin.application.patch({ applicationId: orgApp.id, application: { name: 'Line One' } });
  assert.strictEqual(renamed.name, 'Line One');

  // The editor may create applications in the organization and delete them.
  const { client: second } = await login('second@example.com', 'second-password-1');
  const made = await second.applications.post({ application: { name: 'Editor app', orgId: org.id } });
  assert.deepStrictEqual((await second.application.delete({ applicationId: made.id })), { success: true });
  await expectError(404, second.application.get({ applicationId: ownApp.id }));
  const forbidden = await expectError(403, second.org.patch({ orgId: org.id, organization: { name: 'x' } }));
  assert.match(forbidden.message, /org\.patch/);

  const bad = await expectError(400, admin.applications.post({ application: { name: 'x'.repeat(256) } }));
  assert.strictEqual(bad.type, 'Validation');

  assert.deepStrictEqual(await admin.application.delete({ applicationId: ownApp.id }), { success: true });
  await expectError(404, admin.application.get({ applicationId: ownApp.id }));
});
