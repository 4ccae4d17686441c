// The official SDK drives the images resource against a real registry:
// create (202, async), get by reference, list with a tag filter, delete,
// and our errors surfacing as the SDK's typed errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Hypeman from '@onkernel/hypeman';
import { startDaemon } from '../harness/daemon.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, client;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  client = new Hypeman({ baseURL: d.url, apiKey: d.token(), maxRetries: 0 });
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

async function settle(name) {
  for (let i = 0; i < 600; i++) {
    const img = await client.images.get(name);
    if (img.status === 'ready' || img.status === 'failed') return img;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} did not settle`);
}

test('images.create -> get -> list -> delete', async () => {
  const name = `${reg.host}/test/busybox:latest`;
  const created = await client.images.create({ name, tags: { suite: 'sdk' } });
  assert.equal(created.name, name);
  assert.ok(['pending', 'pulling', 'converting', 'ready'].includes(created.status));
  const img = await settle(name);
  assert.equal(img.status, 'ready', img.error ?? '');
  assert.match(img.digest, /^sha256:/);
  assert.deepEqual(img.cmd, ['/bin/sh']);
  const all = await client.images.list();
  assert.ok(all.some((i) => i.name === name));
  const tagged = await client.images.list({ tags: { suite: 'sdk' } });
  assert.deepEqual(tagged.map((i) => i.name), [name]);
  const none = await client.images.list({ tags: { suite: 'other' } });
  assert.deepEqual(none, []);
  await client.images.delete(name);
  await assert.rejects(client.images.get(name), (e) => e instanceof Hypeman.NotFoundError && e.status === 404);
});

test('a bad reference is a BadRequestError with code invalid_name', async () => {
  await assert.rejects(client.images.create({ name: 'Not/Valid' }), (e) => {
    assert.ok(e instanceof Hypeman.BadRequestError, e.constructor.name);
    assert.equal(e.error.code, 'invalid_name');
    return true;
  });
});

test('an unknown repository ends failed with an error the SDK returns', async () => {
  const name = `${reg.host}/test/does-not-exist:1`;
  await client.images.create({ name });
  const img = await settle(name);
  assert.equal(img.status, 'failed');
  assert.match(img.error, /not found/);
});
