// oidc-provider (panva, npm) configured like tokentrail's bench server, for bench/peer.py.
//
// client_credentials with client_secret_basic; JWT (RFC 9068) access tokens signed
// ES256 through resource indicators (accessTokenFormat 'jwt'); DPoP enabled without
// server nonces (no nonceSecret: proofs are accepted on iat alone, as tokentrail's
// default); introspection and revocation enabled; refresh tokens always rotate; the
// default in-memory adapter.
//
// Clients (all client_secret_basic):
//   bench-worker   client_credentials, bearer (or DPoP when a proof is sent)
//   bench-dpop     client_credentials, DPoP required (dpop_bound_access_tokens)
//   bench-api      the resource server: introspection
//   bench-session  refresh_token only: its refresh tokens are minted by POST /bench/sessions
//
// POST /bench/sessions?count=N (loopback bench helper, not part of oidc-provider) creates
// N grants, each with one refresh token for bench-session (scope read, resource
// https://api.example), through oidc-provider's own Grant and RefreshToken models, and
// answers them one per line. tokentrail gets its sessions through the JWT bearer grant
// (an upstream login); oidc-provider has no such grant, and its interactive
// authorization_code login cannot be driven at bench rates, so the pool is minted
// directly; what is measured is only the refresh_token grant at the token endpoint.
//
// Usage: node server.mjs PORT   (OIDC_PROVIDER_DIR: folder whose node_modules holds
// oidc-provider, installed there by bench/peer.py, never inside the repository)
import { createRequire } from 'node:module';
import { generateKeyPairSync } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const port = Number(process.argv[2] || 3000);
const require = createRequire(path.join(process.env.OIDC_PROVIDER_DIR || process.cwd(), 'noop.js'));
const entry = require.resolve('oidc-provider'); // .../oidc-provider/lib/index.js
const { default: Provider } = await import(entry);
// The default in-memory adapter keeps at most 1,000 entries (an LRU) and silently drops
// older tokens, grants and DPoP replay records beyond that: pools of a few thousand
// refresh tokens would vanish. The same adapter class and LRU, with room for 10 million.
const lib = path.dirname(entry);
const load = async (file) => (await import(pathToFileURL(path.join(lib, file)))).default;
const MemoryAdapter = await load('adapters/memory_adapter.js');
const LRU = await load('helpers/lru.js');
const store = new LRU({ maxSize: 10_000_000 });
const CLOCK_TOLERANCE = 15; // oidc-provider's default clockTolerance

const AUDIENCE = 'https://api.example';
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
const client = (id, secret, extra = {}) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: 'ES256', // the only key is ES256 (no id_tokens are issued)
  scope: 'read write',
  ...extra,
});

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    client('bench-worker', 'bench-worker-secret-0123456789abcdef'),
    client('bench-dpop', 'bench-dpop-secret-0123456789abcdef', { dpop_bound_access_tokens: true }),
    client('bench-api', 'bench-api-secret-0123456789abcdef'),
    client('bench-session', 'bench-session-secret-0123456789abcdef', {
      grant_types: ['refresh_token'],
    }),
  ],
  jwks: { keys: [{ ...key, kid: 'bench-es256', use: 'sig', alg: 'ES256' }] },
  scopes: ['read', 'write', 'offline_access'], // offline_access enables the refresh_token grant
  rotateRefreshToken: true, // like tokentrail's federated-login path (rotation: true)
  adapter: (model) => new MemoryAdapter(model, store, CLOCK_TOLERANCE),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: { enabled: true }, // no nonceSecret: nonces are never demanded
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'read write',
        audience: resource,
        accessTokenTTL: 3600,
        // oidc-provider cannot introspect or revoke its JWT access tokens
        // (unsupported_token_type), so those benches ask for an opaque one with this resource.
        accessTokenFormat: resource.endsWith('/opaque') ? 'opaque' : 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.proxy = false;

async function mintSessions(count) {
  const sessionClient = await provider.Client.find('bench-session');
  const lines = [];
  for (let i = 0; i < count; i += 1) {
    const accountId = `user-${i % 1000}`;
    const grant = new provider.Grant({ accountId, clientId: 'bench-session' });
    grant.addResourceScope(AUDIENCE, 'read');
    const grantId = await grant.save();
    const refresh = new provider.RefreshToken({
      accountId,
      client: sessionClient,
      grantId,
      gty: 'authorization_code',
      resource: AUDIENCE,
      scope: 'read',
    });
    lines.push(await refresh.save());
  }
  return lines.join('\n');
}

provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/bench/sessions') {
    const count = Math.min(Number(ctx.query.count) || 0, 1_000_000);
    ctx.type = 'text/plain';
    ctx.body = await mintSessions(count);
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${port}`));
