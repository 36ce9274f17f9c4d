// A real OpenID provider for Warden's tests: oidc-provider with one
// client-credentials client whose access tokens are JWTs for the resource
// (RFC 8707) the test names. Usage: node provider.mjs PORT AUDIENCE [KID] [ALG]
// A new signing key is made at every start (rotation = a restart with another KID).
import Provider from 'oidc-provider';
import * as jose from 'jose';

const [port, audience, kid = 'key-1', alg = 'RS256'] = process.argv.slice(2);
const { privateKey } = await jose.generateKeyPair(alg, { extractable: true });
const jwk = { ...(await jose.exportJWK(privateKey)), kid, use: 'sig', alg };
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'warden-test',
      client_secret: 'warden-test-secret-0123456789',
      grant_types: ['client_credentials'],
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
provider.listen(Number(port), () => console.log(`oidc-provider listening on ${issuer}`));
