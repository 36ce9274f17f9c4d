// A real OpenID provider for Warden's tests: oidc-provider with one
// client-credentials client whose access tokens are JWTs for the resource
// (RFC 8707) the test names. Usage: node provider.mjs PORT AUDIENCE [KID] [ALG]
// A new signing key is made at every start (rotation = a restart with another KID).
// OAuth 2.0 Token Exchange (RFC 8693) is registered through the provider's
// custom grant type hook: a valid access token of this provider is exchanged
// for one of the same subject, for the requested audience and scope, with
// `act` naming the client that asked. GET /test/exchanges counts them.
import Provider from 'oidc-provider';
import * as jose from 'jose';

const [port, audience, kid = 'key-1', alg = 'RS256'] = process.argv.slice(2);
const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
const jwk = { ...(await jose.exportJWK(privateKey)), kid, use: 'sig', alg };
const issuer = `http://127.0.0.1:${port}`;
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
let exchanges = 0;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'warden-test',
      client_secret: 'warden-test-secret-0123456789',
      grant_types: ['client_credentials', EXCHANGE],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [jwk] },
  scopes: ['mcp', 'tools', 'admin'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'mcp tools admin',
        audience: resource,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg } },
      }),
    },
  },
});
provider.registerGrantType(
  EXCHANGE,
  async (ctx) => {
    const { subject_token: subjectToken, subject_token_type: subjectType, audience: wanted, scope } = ctx.oidc.params;
    const fail = (error, description) => {
      ctx.status = 400;
      ctx.body = { error, error_description: description };
    };
    if (subjectType !== ACCESS_TOKEN) return fail('invalid_request', 'subject_token_type must be an access token');
    let subject;
    try {
      ({ payload: subject } = await jose.jwtVerify(subjectToken, publicKey, { issuer }));
    } catch (e) {
      return fail('invalid_grant', `subject_token: ${e.message}`);
    }
    if (!wanted) return fail('invalid_target', 'an audience is required');
    exchanges += 1;
    const token = await new jose.SignJWT({ scope: scope || '', act: { sub: ctx.oidc.client.clientId }, exchanged: true })
      .setProtectedHeader({ alg, kid, typ: 'at+jwt' })
      .setIssuer(issuer)
      .setSubject(subject.sub)
      .setAudience(wanted)
      .setIssuedAt()
      .setExpirationTime('120s')
      .sign(privateKey);
    ctx.body = { access_token: token, issued_token_type: ACCESS_TOKEN, token_type: 'Bearer', expires_in: 120 };
  },
  ['subject_token', 'subject_token_type', 'audience', 'scope', 'requested_token_type', 'actor_token', 'actor_token_type'],
);
provider.use(async (ctx, next) => {
  if (ctx.path === '/test/exchanges') {
    ctx.body = { exchanges };
    return;
  }
  await next();
});
provider.listen(Number(port), () => console.log(`oidc-provider listening on ${issuer}`));
