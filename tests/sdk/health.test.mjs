// The official TypeScript SDK (@onkernel/hypeman, unmodified from npm)
// against the real daemon: health, and that our errors parse as its
// APIError subclasses with our status and message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Hypeman from '@onkernel/hypeman';
import { startDaemon } from '../harness/daemon.mjs';

let d;
before(async () => { d = await startDaemon(); });
after(async () => { await d.stop(); });

test('client.health.check() succeeds', async () => {
  const client = new Hypeman({ baseURL: d.url, apiKey: d.token() });
  const h = await client.health.check();
  assert.equal(h.status, 'ok');
});

test('resources.get() parses our capacity report', async () => {
  const client = new Hypeman({ baseURL: d.url, apiKey: d.token({ scopes: ['resource:read'] }) });
  const r = await client.resources.get();
  assert.equal(r.cpu.type, 'cpu');
  assert.ok(r.memory.capacity > 0);
});

test('a bad token surfaces as AuthenticationError (401) with our message', async () => {
  const client = new Hypeman({ baseURL: d.url, apiKey: 'not-a-token', maxRetries: 0 });
  await assert.rejects(client.resources.get(), (e) => {
    assert.ok(e instanceof Hypeman.AuthenticationError, e.constructor.name);
    assert.equal(e.status, 401);
    assert.equal(e.error.code, 'Unauthorized');
    return true;
  });
});

test('a missing scope surfaces as PermissionDeniedError (403)', async () => {
  const client = new Hypeman({ baseURL: d.url, apiKey: d.token({ scopes: ['image:read'] }), maxRetries: 0 });
  await assert.rejects(client.resources.get(), (e) => {
    assert.ok(e instanceof Hypeman.PermissionDeniedError, e.constructor.name);
    assert.equal(e.status, 403);
    assert.equal(e.error.message, 'missing required scope: resource:read');
    return true;
  });
});
