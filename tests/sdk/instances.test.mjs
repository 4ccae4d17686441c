// The official @onkernel/hypeman SDK against the real daemon booting real
// QEMU guests: create an instance, poll until Running, read its logs over
// SSE, delete it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Hypeman from '@onkernel/hypeman';
import { startDaemon } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, client, image;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  const token = d.token();
  client = new Hypeman({ baseURL: d.url, apiKey: token, maxRetries: 0 });
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  const { img } = await waitImage(d, token, image);
  assert.equal(img.status, 'ready', img.error);
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

test('instances.create -> get until Running -> logs (SSE) -> delete', async () => {
  const inst = await client.instances.create({
    name: 'sdk-ticker', image, size: '256MB', vcpus: 1,
    cmd: ['sh', '-c', 'echo sdk-start; while :; do echo sdk-tick; sleep 0.2; done'],
  });
  assert.match(inst.id, /^[a-z0-9]{24}$/);
  assert.equal(inst.name, 'sdk-ticker');
  let state = inst.state;
  const deadline = Date.now() + 90000;
  while (state !== 'Running' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    state = (await client.instances.get(inst.id)).state;
  }
  assert.equal(state, 'Running');
  // Wait for the first line to reach the console, then read it over SSE.
  let lines = [];
  while (!lines.includes('sdk-start') && Date.now() < deadline) {
    const stream = await client.instances.logs(inst.id, { tail: 50 });
    lines = [];
    for await (const line of stream) lines.push(line);
  }
  assert.ok(lines.includes('sdk-start'), lines.join('\n'));
  const list = await client.instances.list();
  assert.ok(list.some((i) => i.id === inst.id));
  await client.instances.delete(inst.id);
  await assert.rejects(client.instances.get(inst.id), (e) => e.status === 404);
});

test('bad input surfaces as typed SDK errors', async () => {
  await assert.rejects(client.instances.create({ name: 'Bad Name', image }), (e) => e.status === 400 && e.error?.code === 'invalid_name');
  await assert.rejects(client.instances.create({ name: 'ghost', image: `${reg.host}/test/nothing:here` }), (e) => e.status === 404);
  await assert.rejects(client.instances.get('no-such-instance'), (e) => e.status === 404);
});
