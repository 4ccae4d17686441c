// A registry front door that demands Docker token auth: /v2/* without a
// valid bearer token is 401 with a `WWW-Authenticate: Bearer realm=...`
// challenge; GET /token trades HTTP Basic credentials (or nothing, in
// anonymous mode: username undefined) for a token; authorized requests are
// proxied, streaming, to the real registry behind it.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { freePort } from './registry.mjs';

export async function startTokenProxy(reg, { username, password, service = 'test-registry' } = {}) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const tokens = new Set();
  const tokenRequests = []; // { service, scope, user } per /token request that got a token
  const upstreamAuth = reg.auth ? 'Basic ' + Buffer.from(`${reg.auth.username}:${reg.auth.password}`).toString('base64') : null;
  const json = (res, status, body, headers = {}) => {
    const buf = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': buf.length, ...headers });
    res.end(buf);
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, base);
    if (url.pathname === '/token') {
      let user;
      if (username !== undefined) {
        const want = 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
        if (req.headers.authorization !== want) {
          return json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'incorrect username or password' }] },
            { 'www-authenticate': `Basic realm="${base}/token"` });
        }
        user = username;
      }
      const t = randomBytes(16).toString('hex');
      tokens.add(t);
      tokenRequests.push({ service: url.searchParams.get('service'), scope: url.searchParams.getAll('scope'), user });
      return json(res, 200, { token: t, access_token: t, expires_in: 300, issued_at: new Date().toISOString() });
    }
    if (!url.pathname.startsWith('/v2/') && url.pathname !== '/v2') return json(res, 404, { errors: [{ code: 'NOT_FOUND', message: 'no such endpoint' }] });
    const auth = req.headers.authorization || '';
    if (!auth.startsWith('Bearer ') || !tokens.has(auth.slice(7))) {
      const m = url.pathname.match(/^\/v2\/(.+?)\/(manifests|blobs|tags|referrers)\//);
      const scope = m ? `,scope="repository:${m[1]}:pull"` : '';
      return json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] },
        { 'www-authenticate': `Bearer realm="${base}/token",service="${service}"${scope}` });
    }
    const headers = { ...req.headers };
    delete headers.authorization;
    delete headers.host;
    if (upstreamAuth) headers.authorization = upstreamAuth;
    const up = http.request(`${reg.url}${req.url}`, { method: req.method, headers }, (ur) => {
      const h = { ...ur.headers };
      if (h.location) h.location = h.location.replace(reg.url, base);
      res.writeHead(ur.statusCode, h);
      ur.pipe(res);
      ur.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
    req.pipe(up);
  });
  await new Promise((r, j) => { server.once('error', j); server.listen(port, '127.0.0.1', r); });
  return {
    url: base, host: `127.0.0.1:${port}`,
    tokensIssued: () => tokenRequests.length,
    tokenRequests: () => tokenRequests.slice(),
    revokeAll: () => tokens.clear(),
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
