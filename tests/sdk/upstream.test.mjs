// Current upstream behaviour, newer than the 0.3.0 spec, through the official
// @onkernel/hypeman 0.28.0 SDK on real QEMU guests: a create of an image never
// pulled pulls it first; a delete stops the guest gracefully unless
// graceful_shutdown=false; asking for the state an instance is already in
// answers the instance; images.tag adds a local name for an image's content.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Hypeman from '@onkernel/hypeman';
import { startDaemon } from '../harness/daemon.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, client, image;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  client = new Hypeman({ baseURL: d.url, apiKey: d.token(), maxRetries: 0, timeout: 180000 });
  image = `${reg.host}/test/busybox:latest`;
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

const waitRunning = (id) => client.instances.wait(id, { state: 'Running', timeout: '90s' });
const program = ['sh', '-c', 'trap "echo got-term; exit 0" TERM; while :; do sleep 0.1; done'];

test('a create of an image never pulled pulls it first; an image no registry has is a 404 with the pull\'s error', { timeout: 240000 }, async () => {
  assert.deepEqual((await client.images.list()).map((i) => i.name), [], 'nothing pulled yet');
  const inst = await client.instances.create({ name: 'auto-pull', image, size: '256MB', vcpus: 1, cmd: program });
  assert.equal(inst.image, image);
  const img = await client.images.get(image);
  assert.equal(img.status, 'ready');
  assert.match(d.log, /msg="pulling for a create" name=/);
  await waitRunning(inst.id);
  await assert.rejects(client.instances.create({ name: 'no-such', image: `${reg.host}/test/nothing:here` }), (e) => {
    assert.ok(e instanceof Hypeman.NotFoundError, `${e.constructor.name}: ${e.message}`);
    assert.equal(e.error.code, 'image_pull_failed');
    assert.match(e.error.message, /could not be pulled: .*not found/i);
    return true;
  });
  assert.deepEqual((await client.instances.list()).map((i) => i.name), ['auto-pull']);
});

test('asking for the state an instance is in answers it: start of Running, stop of Stopped, standby of Standby, restore of Running', { timeout: 240000 }, async () => {
  const id = (await client.instances.get('auto-pull')).id;
  assert.equal((await client.instances.start(id)).state, 'Running');
  await assert.rejects(client.instances.start(id, { cmd: ['true'] }), (e) => e instanceof Hypeman.ConflictError && /stop it to start it with another command/.test(e.message));
  assert.equal((await client.instances.restore(id)).state, 'Running');
  assert.equal((await client.instances.standby(id)).state, 'Standby');
  assert.equal((await client.instances.standby(id)).state, 'Standby');
  assert.equal((await client.instances.restore(id)).state, 'Running');
  assert.equal((await client.instances.stop(id)).state, 'Stopped');
  const again = await client.instances.stop(id);
  assert.equal(again.state, 'Stopped');
  assert.equal(again.exit_code, 0, 'the program got SIGTERM and exited 0');
});

test('delete stops a running guest gracefully first; graceful_shutdown=false kills it', { timeout: 240000 }, async () => {
  const a = await client.instances.create({ name: 'del-graceful', image, size: '256MB', vcpus: 1, cmd: program });
  const b = await client.instances.create({ name: 'del-kill', image, size: '256MB', vcpus: 1, cmd: program });
  await waitRunning(a.id);
  await waitRunning(b.id);
  await client.instances.delete(a.id);
  await client.instances.delete(b.id, { graceful_shutdown: false });
  for (const id of [a.id, b.id]) await assert.rejects(client.instances.get(id), Hypeman.NotFoundError);
  // The daemon's log keeps what the instances' own logs took with them.
  const stopped = (id) => d.log.split('\n').some((l) => l.includes('msg="stopped"') && l.includes(`id=${id}`) && l.includes('via="guest init"'));
  assert.ok(stopped(a.id), 'the graceful delete went through the guest init');
  assert.ok(!stopped(b.id), 'graceful_shutdown=false went straight to the kill');
  const r = await d.fetch(`/instances/${a.id}?graceful_shutdown=maybe`, { method: 'DELETE', token: d.token() });
  assert.equal(r.status, 400);
});

test('images.tag: a local name for an image\'s content, sharing its disk, without a pull', async () => {
  const target = `${reg.host}/local/mine:stable`;
  const src = await client.images.get(image);
  const tagged = await client.images.tag(image, { target });
  assert.equal(tagged.name, target);
  assert.equal(tagged.status, 'ready');
  assert.equal(tagged.digest, src.digest);
  assert.equal((await client.images.get(target)).digest, src.digest);
  // The source's name can go: the content stays for the tag, and a create from it works.
  await client.images.delete(image);
  const inst = await client.instances.create({ name: 'from-tag', image: target, size: '256MB', vcpus: 1, cmd: ['true'] });
  assert.equal(inst.image, target);
  await client.instances.wait(inst.id, { state: 'Stopped', timeout: '90s' });
  assert.equal((await client.instances.get(inst.id)).exit_code, 0);
  // Refusals: a digest as target, an unknown source.
  await assert.rejects(client.images.tag(target, { target: `${reg.host}/local/mine@${src.digest}` }), (e) => e instanceof Hypeman.BadRequestError && /needs a tag/.test(e.message));
  await assert.rejects(client.images.tag(`${reg.host}/no/such:image`, { target: `${reg.host}/x/y:z` }), Hypeman.NotFoundError);
  await assert.rejects(client.images.tag(target, {}), Hypeman.BadRequestError);
});
