// oidc-provider (panva, npm) configured like tokentrail's bench server, for bench/peer.py.
//
// client_credentials with client_secret_basic; JWT (RFC 9068) access tokens signed
// ES256 through resource indicators (accessTokenFormat 'jwt'); DPoP enabled;
// introspection and revocation enabled; the default in-memory adapter.
//
// Usage: node server.mjs PORT   (OIDC_PROVIDER_DIR: folder whose node_modules holds
// oidc-provider, installed there by bench/peer.py, never inside the repository)
import { createRequire } from 'node:module';
import { generateKeyPairSync } from 'node:crypto';
import path from 'node:path';

const port = Number(process.argv[2] || 3000);
const require = createRequire(path.join(process.env.OIDC_PROVIDER_DIR || process.cwd(), 'noop.js'));
const { default: Provider } = await import(require.resolve('oidc-provider'));

const AUDIENCE = 'https://api.example';
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
const client = (id, secret) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: 'ES256', // the only key is ES256 (no id_tokens are issued)
  scope: 'read write',
});

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    client('bench-worker', 'bench-worker-secret-0123456789abcdef'),
    client('bench-api', 'bench-api-secret-0123456789abcdef'),
  ],
  jwks: { keys: [{ ...key, kid: 'bench-es256', use: 'sig', alg: 'ES256' }] },
  scopes: ['read', 'write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'read write',
        audience: resource,
        accessTokenTTL: 3600,
        // oidc-provider cannot introspect its JWT access tokens (unsupported_token_type),
        // so the introspection bench asks for an opaque one with this resource.
        accessTokenFormat: resource.endsWith('/opaque') ? 'opaque' : 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.proxy = false;
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${port}`));
