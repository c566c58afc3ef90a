// Drives a running tokentrail with OAuth and DPoP clients tokentrail did not write:
// panva's oauth4webapi (metadata, client credentials, introspection, revocation,
// DPoP with nonce retry) and panva's dpop (hand-made proofs).
// Usage: node clients.mjs   (ISSUER, CLIENT_ID, CLIENT_SECRET, DPOP_CLIENT_ID,
// DPOP_CLIENT_SECRET in the environment). Prints one JSON line of results.
import * as oauth from 'oauth4webapi'
import * as dpop from 'dpop'

const env = process.env
const insecure = { [oauth.allowInsecureRequests]: true }
const issuer = new URL(env.ISSUER)
const out = {}

const as = await oauth.processDiscoveryResponse(
  issuer,
  await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
)
out.metadata_issuer = as.issuer

// Bearer client credentials.
const client = { client_id: env.CLIENT_ID }
const auth = oauth.ClientSecretBasic(env.CLIENT_SECRET)
let res = await oauth.clientCredentialsGrantRequest(
  as, client, auth, new URLSearchParams({ scope: 'read' }), insecure,
)
const bearer = await oauth.processClientCredentialsResponse(as, client, res)
out.bearer_token_type = bearer.token_type

// Introspection of that token, then revocation, then introspection again.
res = await oauth.introspectionRequest(as, client, auth, bearer.access_token, insecure)
const intro = await oauth.processIntrospectionResponse(as, client, res)
out.introspection_active = intro.active
out.introspection_path = intro.tt_path
res = await oauth.revocationRequest(as, client, auth, bearer.access_token, insecure)
await oauth.processRevocationResponse(res)
res = await oauth.introspectionRequest(as, client, auth, bearer.access_token, insecure)
out.after_revocation_active = (await oauth.processIntrospectionResponse(as, client, res)).active

// DPoP-bound client credentials (oauth4webapi's DPoP handle; retries on use_dpop_nonce).
const dpopClient = { client_id: env.DPOP_CLIENT_ID }
const dpopAuth = oauth.ClientSecretBasic(env.DPOP_CLIENT_SECRET)
const keyPair = await oauth.generateKeyPair('ES256')
const DPoP = oauth.DPoP(dpopClient, keyPair)
const grant = () => oauth.clientCredentialsGrantRequest(
  as, dpopClient, dpopAuth, new URLSearchParams(), { DPoP, ...insecure },
)
let bound
try {
  bound = await oauth.processClientCredentialsResponse(as, dpopClient, await grant())
} catch (err) {
  if (!oauth.isDPoPNonceError(err)) throw err
  out.nonce_retry = true
  bound = await oauth.processClientCredentialsResponse(as, dpopClient, await grant())
}
out.dpop_token_type = bound.token_type
res = await oauth.introspectionRequest(as, dpopClient, dpopAuth, bound.access_token, insecure)
const boundIntro = await oauth.processIntrospectionResponse(as, dpopClient, res)
out.dpop_cnf_jkt = boundIntro.cnf && boundIntro.cnf.jkt

// The same DPoP-bound token used at a protected endpoint of tokentrail's own.
res = await oauth.protectedResourceRequest(
  bound.access_token, 'GET', new URL('/sessions', issuer), new Headers(), null,
  { DPoP, ...insecure },
)
out.protected_status = res.status

// A proof made by the dpop package, with a fresh key, at the token endpoint.
const kp2 = await dpop.generateKeyPair('ES256')
const proof = await dpop.generateProof(kp2, as.token_endpoint, 'POST')
const basic = Buffer.from(`${env.DPOP_CLIENT_ID}:${env.DPOP_CLIENT_SECRET}`).toString('base64')
res = await fetch(as.token_endpoint, {
  method: 'POST',
  headers: {
    authorization: `Basic ${basic}`,
    'content-type': 'application/x-www-form-urlencoded',
    dpop: proof,
  },
  body: 'grant_type=client_credentials',
})
const body = await res.json()
out.dpop_pkg_status = res.status
out.dpop_pkg_token_type = body.token_type
// Replaying the same proof must fail.
res = await fetch(as.token_endpoint, {
  method: 'POST',
  headers: {
    authorization: `Basic ${basic}`,
    'content-type': 'application/x-www-form-urlencoded',
    dpop: proof,
  },
  body: 'grant_type=client_credentials',
})
out.replay_error = (await res.json()).error

console.log(JSON.stringify(out))
