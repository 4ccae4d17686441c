// The official @onkernel/hypeman SDK through a whole instance life on a
// real QEMU guest: create -> wait Running -> stat a file in the guest ->
// stats -> stop -> start with a cmd override -> update env -> delete.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Hypeman from '@onkernel/hypeman';
import { startDaemon } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { readLogs } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, client, image, token;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  token = d.token();
  client = new Hypeman({ baseURL: d.url, apiKey: token, maxRetries: 0, timeout: 120000 });
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  const { img } = await waitImage(d, token, image);
  assert.equal(img.status, 'ready', img.error);
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

async function logsUntil(id, want, ms = 60000) {
  const deadline = Date.now() + ms;
  let lines = [];
  while (Date.now() < deadline) {
    lines = await readLogs(d, token, id, { source: 'app' });
    if (lines.some((l) => want.test(l))) return lines;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`no log line matching ${want} in:\n${lines.join('\n')}`);
}

test('create -> Running -> stat -> stats -> stop -> start(cmd) -> update env -> delete', { timeout: 300000 }, async () => {
  const inst = await client.instances.create({
    name: 'sdk-life', image, size: '256MB', vcpus: 1, env: { GREETING: 'hello' },
    cmd: ['sh', '-c', 'echo "first $GREETING" > /marker; echo first-boot; exec sleep 1000'],
  });
  const w = await client.instances.wait(inst.id, { state: 'Running', timeout: '90s' });
  assert.equal(w.state, 'Running');
  assert.equal(w.timed_out, false);
  await logsUntil(inst.id, /^first-boot$/);

  // stat: the file the program wrote, a directory, a missing path.
  const f = await client.instances.stat(inst.id, { path: '/marker' });
  assert.equal(f.exists, true);
  assert.equal(f.is_file, true);
  assert.equal(f.size, 'first hello\n'.length);
  const dir = await client.instances.stat(inst.id, { path: '/etc' });
  assert.equal(dir.is_dir, true);
  const none = await client.instances.stat(inst.id, { path: '/no/such/file' });
  assert.equal(none.exists, false);

  const s = await client.instances.stats(inst.id);
  assert.equal(s.instance_id, inst.id);
  assert.equal(s.instance_name, 'sdk-life');
  assert.equal(s.allocated_vcpus, 1);
  assert.equal(s.allocated_memory_bytes, 256 * 1024 * 1024);
  assert.ok(s.memory_rss_bytes > 0, JSON.stringify(s));
  assert.ok(s.cpu_seconds > 0, JSON.stringify(s));

  const stopped = await client.instances.stop(inst.id);
  assert.equal(stopped.state, 'Stopped');
  assert.ok(stopped.stopped_at);
  await assert.rejects(client.instances.stat(inst.id, { path: '/' }), (e) => e.status === 409);

  // Env updates apply on the next start; the overlay (and /marker) persists.
  const upd = await client.instances.update(inst.id, { env: { GREETING: 'again', EXTRA: 'x1' } });
  assert.equal(upd.env.GREETING, 'again');
  const started = await client.instances.start(inst.id, {
    cmd: ['sh', '-c', 'cat /marker; echo "second $GREETING $EXTRA"; exec sleep 1000'],
  });
  assert.ok(['Initializing', 'Running', 'Created'].includes(started.state), started.state);
  await client.instances.wait(inst.id, { state: 'Running', timeout: '90s' });
  const lines = await logsUntil(inst.id, /^second again x1$/);
  assert.ok(lines.includes('first hello'), lines.join('\n'));
  const again = await client.instances.stat(inst.id, { path: '/marker' });
  assert.equal(again.exists, true);

  await client.instances.delete(inst.id);
  await assert.rejects(client.instances.get(inst.id), (e) => e.status === 404);
});
