// Shared set-up for the JavaScript client scenarios (see crates/tollgate-server/tests/official_clients.rs).
const { execFileSync } = require('child_process');
const assert = require('assert');
const api = require('losant-rest');

const URL = process.env.TOLLGATE_URL;
const ADMIN_EMAIL = process.env.TOLLGATE_ADMIN_EMAIL;
const ADMIN_PASSWORD = process.env.TOLLGATE_ADMIN_PASSWORD;

// A client logged in as a user, through auth.authenticateUser.
async function login(email = ADMIN_EMAIL, password = ADMIN_PASSWORD) {
  const anon = api.createClient({ url: URL });
  const resp = await anon.auth.authenticateUser({ credentials: { email, password } });
  assert.ok(resp.token.startsWith('tgus_'), JSON.stringify(resp));
  return { client: api.createClient({ url: URL, accessToken: resp.token }), userId: resp.userId, token: resp.token };
}

// A client that authenticates with an application API token.
function asToken(secret) {
  return api.createClient({ url: URL, accessToken: secret });
}

// Create a user with the CLI while the server runs on the same database.
function addUser(email, password) {
  execFileSync(process.env.TOLLGATE_BIN, ['user', 'add', '--email', email, '--password', password], {
    env: process.env,
    stdio: 'pipe',
  });
}

// Await a call that must fail with this status; return the error.
async function expectError(status, promise) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    assert.strictEqual(err.statusCode, status, `${err.statusCode}: ${err.message}`);
    return err;
  }
  throw new Error(`expected HTTP ${status}, got success: ${JSON.stringify(result)}`);
}

function run(main) {
  main().then(
    () => console.log('passed'),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}

module.exports = { URL, ADMIN_EMAIL, login, asToken, addUser, expectError, run, assert };
