// The HTTP contract of the foundation: public /health and spec, 401 and 403
// shapes, unknown routes, wrong methods, body limits, and a clean SIGTERM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startDaemon } from '../harness/daemon.mjs';

let d;
before(async () => { d = await startDaemon({ env: { MAX_BODY_BYTES: '4096' } }); });
after(async () => { await d.stop(); });

// A raw request through node:http, for what fetch() will not send (GET with a body).
function raw(method, path, { headers = {}, body } = {}) {
  return new Promise((res, rej) => {
    if (body !== undefined) headers = { 'content-length': Buffer.byteLength(body), ...headers };
    const req = http.request(d.url + path, { method, headers, agent: false }, (r) => {
      let data = '';
      r.on('data', (c) => { data += c; });
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body: data }));
    });
    req.on('error', rej);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

async function errorBody(r) {
  assert.match(r.headers.get('content-type'), /^application\/json/);
  const j = await r.json();
  assert.deepEqual(Object.keys(j).sort(), ['code', 'message']);
  assert.equal(typeof j.message, 'string');
  assert.ok(j.message.length > 0);
  return j;
}

test('GET /health is public and answers {"status":"ok"}', async () => {
  const r = await d.fetch('/health');
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { status: 'ok' });
});

test('spec is served as YAML and JSON and describes /health', async () => {
  const y = await d.fetch('/spec.yaml');
  assert.equal(y.status, 200);
  const text = await y.text();
  assert.match(text, /^openapi: 3\./m);
  const j = await d.fetch('/spec.json');
  assert.equal(j.status, 200);
  const spec = await j.json();
  assert.ok(spec.paths['/health'].get);
  assert.ok(spec.paths['/resources'].get);
});

test('no token: 401 Unauthorized with {code,message} and WWW-Authenticate', async () => {
  const r = await d.fetch('/resources');
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer');
  const j = await errorBody(r);
  assert.equal(j.code, 'Unauthorized');
});

test('unknown routes also need a token (no route probing)', async () => {
  const r = await d.fetch('/no/such/thing');
  assert.equal(r.status, 401);
  assert.equal((await errorBody(r)).code, 'Unauthorized');
});

test('bad tokens are 401: garbage, wrong secret, expired, wrong scheme', async () => {
  for (const h of ['Bearer nonsense', 'Bearer a.b.c', 'Basic dXNlcjpwYXNz', 'Bearer ']) {
    const r = await d.fetch('/resources', { headers: { authorization: h } });
    assert.equal(r.status, 401, h);
    assert.equal((await errorBody(r)).code, 'Unauthorized');
  }
  const foreign = d.token({ env: { JWT_SECRET: 'some-other-secret-0123456789' } });
  let r = await d.fetch('/resources', { token: foreign });
  assert.equal(r.status, 401);
  const expired = d.token({ duration: '1s' });
  await new Promise((res) => setTimeout(res, 2100));
  r = await d.fetch('/resources', { token: expired });
  assert.equal(r.status, 401);
  assert.match((await errorBody(r)).message, /expired/i);
});

test('token without the scope: 403 naming the scope', async () => {
  const t = d.token({ scopes: ['instance:read'] });
  const r = await d.fetch('/resources', { token: t });
  assert.equal(r.status, 403);
  const j = await errorBody(r);
  assert.equal(j.code, 'Forbidden');
  assert.equal(j.message, 'missing required scope: resource:read');
});

test('token with the scope, or full access, gets /resources', async () => {
  for (const t of [d.token({ scopes: ['resource:read'] }), d.token({ scopes: ['*'] }), d.token()]) {
    const r = await d.fetch('/resources', { token: t });
    assert.equal(r.status, 200);
    const j = await r.json();
    for (const k of ['cpu', 'memory', 'disk', 'network']) {
      assert.equal(j[k].type, k);
      assert.ok(j[k].capacity > 0, `${k} capacity`);
      assert.equal(j[k].available, j[k].effective_limit - j[k].allocated);
    }
    assert.ok(Array.isArray(j.allocations));
  }
});

test('unknown route with a token: 404 not_found', async () => {
  const r = await d.fetch('/no/such/thing', { token: d.token() });
  assert.equal(r.status, 404);
  assert.equal((await errorBody(r)).code, 'not_found');
});

test('wrong method: 405 with Allow', async () => {
  const r = await d.fetch('/resources', { method: 'DELETE', token: d.token() });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET');
  assert.equal((await errorBody(r)).code, 'method_not_allowed');
});

test('oversized body: 413 before the body is read', async () => {
  const r = await raw('GET', '/resources', {
    headers: { authorization: `Bearer ${d.token()}`, 'content-type': 'application/json' },
    body: 'x'.repeat(5000),
  });
  assert.equal(r.status, 413);
  assert.equal(JSON.parse(r.body).code, 'payload_too_large');
});

test('a body where none is taken: 400 naming the route', async () => {
  const r = await raw('GET', '/resources', {
    headers: { authorization: `Bearer ${d.token()}`, 'content-type': 'application/json' },
    body: '{}',
  });
  assert.equal(r.status, 400);
  assert.match(JSON.parse(r.body).message, /GET \/resources takes no request body/);
});

test('a trailing slash names the same resource', async () => {
  const r = await d.fetch('/health/');
  assert.equal(r.status, 200);
});

test('every response carries JSON, even for odd paths', async () => {
  // %ff and a cut multibyte name: bytes that are not UTF-8 reach the message, repaired.
  for (const p of ['/%zz', '//', '/resources/x/', '/%00', '/instances/%ff', '/images/%c3', `/instances/${'%c3%a9'.repeat(30)}x`]) {
    const r = await d.fetch(p, { token: d.token() });
    assert.ok([400, 404].includes(r.status), `${p} -> ${r.status}`);
    await errorBody(r);
  }
});
