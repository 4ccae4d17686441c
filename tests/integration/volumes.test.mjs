// Volumes on real TCG guests: data written by one instance is read by the
// next after the first is deleted; a read-only attachment cannot be written
// (the device itself is read-only); sharing rules; refusals.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { createInstance, waitState, readLogs } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, token, image;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  token = d.token();
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  assert.equal((await waitImage(d, token, image)).img.status, 'ready');
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

const small = { size: '256MB', vcpus: 1 };
const post = async (path, body) => {
  const r = await d.fetch(path, { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
};
const del = async (path) => (await d.fetch(path, { method: 'DELETE', token })).status;

async function run(name, volumes, script) {
  const c = await createInstance(d, token, { name, image, ...small, volumes, cmd: ['sh', '-c', script] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const { inst } = await waitState(d, token, c.body.id, ['Stopped']);
  // The kernel's last words ("reboot: Power down") may reach the console too.
  return { inst, lines: (await readLogs(d, token, c.body.id)).filter((l) => !/^\[\s*\d+\.\d+\]/.test(l)) };
}

test('write in one instance, delete it, read the same bytes in the next; read-only cannot write', async () => {
  const v = await post('/volumes', { name: 'shared', size_gb: 1 });
  assert.equal(v.status, 201);
  const w = await run('writer', [{ volume_id: 'shared', mount_path: '/data' }],
    'head -c 100000 /dev/urandom > /data/blob && sha256sum /data/blob | cut -d" " -f1 && echo hello > /data/note && sync');
  assert.equal(w.inst.exit_code, 0, w.lines.join('\n'));
  assert.deepEqual(w.inst.volumes, [{ volume_id: v.body.id, mount_path: '/data', readonly: false }]);
  const sum = w.lines[0];
  assert.match(sum, /^[0-9a-f]{64}$/);
  assert.equal(await del(`/instances/${w.inst.id}`), 204);

  const r = await run('reader', [{ volume_id: v.body.id, mount_path: '/mnt/in', readonly: true }],
    'sha256sum /mnt/in/blob | cut -d" " -f1; cat /mnt/in/note; touch /mnt/in/x 2>&1 || echo refused; grep " /mnt/in " /proc/mounts | cut -d" " -f4 | cut -d, -f1');
  assert.equal(r.inst.exit_code, 0, r.lines.join('\n'));
  assert.equal(r.lines[0], sum);
  assert.equal(r.lines[1], 'hello');
  assert.match(r.lines.join('\n'), /Read-only file system/);
  assert.ok(r.lines.includes('refused'));
  assert.ok(r.lines.includes('ro'));
  // The volume lists its attachment while the instance exists, and cannot be deleted.
  const got = await (await d.fetch('/volumes/shared', { token })).json();
  assert.deepEqual(got.attachments, [{ instance_id: r.inst.id, mount_path: '/mnt/in', readonly: true }]);
  const busy = await d.fetch('/volumes/shared', { method: 'DELETE', token });
  assert.equal(busy.status, 409);
  assert.equal((await busy.json()).code, 'in_use');
  assert.equal(await del(`/instances/${r.inst.id}`), 204);
  assert.equal(await del('/volumes/shared'), 204);
});

test('sharing: one writer alone; readers together; refusals leave nothing', async () => {
  const v = await post('/volumes', { name: 'base', size_gb: 1 });
  const keep = { image, ...small, cmd: ['sleep', '1000'] };
  const r1 = await post('/instances', { name: 'ro-1', ...keep, volumes: [{ volume_id: 'base', mount_path: '/base', readonly: true }] });
  assert.equal(r1.status, 201, JSON.stringify(r1.body));
  const r2 = await post('/instances', { name: 'ro-2', ...keep, volumes: [{ volume_id: 'base', mount_path: '/base', readonly: true }] });
  assert.equal(r2.status, 201, JSON.stringify(r2.body));
  const w = await post('/instances', { name: 'rw-1', ...keep, volumes: [{ volume_id: 'base', mount_path: '/base' }] });
  assert.equal(w.status, 409);
  assert.equal(w.body.code, 'volume_in_use');
  for (const [body, status] of [
    [{ name: 'v1', ...keep, volumes: [{ volume_id: 'nope', mount_path: '/x' }] }, 404],
    [{ name: 'v2', ...keep, volumes: [{ volume_id: 'base', mount_path: '/etc', readonly: true }] }, 400],
    [{ name: 'v3', ...keep, volumes: [{ volume_id: 'base', mount_path: 'relative', readonly: true }] }, 400],
    [{ name: 'v4', ...keep, volumes: [{ volume_id: 'base', mount_path: '/proc/x', readonly: true }] }, 400],
    [{ name: 'v5', ...keep, volumes: [{ volume_id: 'base', mount_path: '/a/../etc', readonly: true }] }, 400],
    [{ name: 'v6', ...keep, volumes: [{ volume_id: 'base', mount_path: '/a', readonly: true }, { volume_id: 'base', mount_path: '/a', readonly: true }] }, 400],
    [{ name: 'v7', ...keep, volumes: 'base' }, 400],
  ]) {
    const r = await post('/instances', body);
    assert.equal(r.status, status, JSON.stringify(body) + JSON.stringify(r.body));
    // By the list, not GET /instances/NAME: a short name like `v1` is also a
    // unique-prefix lookup, and may match a random id of ro-1 or ro-2.
    const names = (await (await d.fetch('/instances', { token })).json()).map((i) => i.name);
    assert.ok(!names.includes(body.name), `${body.name} left behind`);
  }
  assert.equal((await (await d.fetch('/volumes/base', { token })).json()).attachments.length, 2);
  for (const r of [r1, r2]) assert.equal(await del(`/instances/${r.body.id}`), 204);
  const w2 = await post('/instances', { name: 'rw-2', ...keep, volumes: [{ volume_id: v.body.id, mount_path: '/base' }] });
  assert.equal(w2.status, 201, JSON.stringify(w2.body));
  assert.equal(await del(`/instances/${w2.body.id}`), 204);
  assert.equal(await del('/volumes/base'), 204);
});

test('overlay: instances share a base volume, each sees only its own writes; the base is unchanged', async () => {
  const base = await post('/volumes', { name: 'ovbase', size_gb: 1 });
  const seed = await run('seed', [{ volume_id: 'ovbase', mount_path: '/base' }], 'echo original > /base/file && sync');
  assert.equal(seed.inst.exit_code, 0, seed.lines.join('\n'));
  assert.equal(await del(`/instances/${seed.inst.id}`), 204);
  const ov = (mount) => [{ volume_id: 'ovbase', mount_path: mount, overlay: true, overlay_size: '256MB' }];
  const a = await run('ov-a', ov('/w'), 'echo a > /w/file; echo only-a > /w/a; cat /w/file; ls -1 /w');
  const b = await run('ov-b', ov('/w'), 'cat /w/file; ls -1 /w; echo b > /w/b');
  assert.equal(a.inst.exit_code, 0, a.lines.join('\n'));
  assert.deepEqual(a.lines, ['a', 'a', 'file', 'lost+found']);
  assert.equal(b.inst.exit_code, 0, b.lines.join('\n'));
  assert.deepEqual(b.lines, ['original', 'file', 'lost+found']);
  // Each keeps its layer across stop/start.
  const r = await post(`/instances/${a.inst.id}/start`, { cmd: ['sh', '-c', 'cat /w/a'] });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await waitState(d, token, a.inst.id, ['Stopped']);
  assert.ok((await readLogs(d, token, a.inst.id)).includes('only-a'));
  // The base volume still holds only what the seed wrote.
  const check = await run('check', [{ volume_id: 'ovbase', mount_path: '/base', readonly: true }], 'cat /base/file; ls -1 /base');
  assert.deepEqual(check.lines, ['original', 'file', 'lost+found']);
  for (const i of [a, b, check]) assert.equal(await del(`/instances/${i.inst.id}`), 204);
  assert.equal(await del(`/volumes/${base.body.id}`), 204);
});

test('CLI: hypeman run -v VOLUME:/path and VOLUME:/path:ro', async () => {
  const env = { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: token };
  let r = await runCli(['volume', 'create', 'cli-vol', '--size', '1'], { env });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['run', '--name', 'cli-w', '-m', '256MB', '--cpus', '1', '-v', 'cli-vol:/v', image, 'sh', '-c', 'echo kept > /v/f && cat /v/f'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /kept/, JSON.stringify(r));
  // Stopped, cli-w still holds the volume read-write: a reader must wait for its removal.
  r = await runCli(['run', '--name', 'cli-r', '-v', 'cli-vol:/v:ro', image, 'true'], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /volume_in_use/);
  r = await runCli(['rm', 'cli-w'], { env });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['run', '--name', 'cli-r', '-m', '256MB', '--cpus', '1', '-v', 'cli-vol:/v:ro', image, 'sh', '-c', 'cat /v/f; touch /v/g'], { env });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /kept/, JSON.stringify(r));
  r = await runCli(['run', '-v', 'cli-vol', image], { env });
  assert.equal(r.code, 2);
  r = await runCli(['rm', '-f', 'cli-r'], { env });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['volume', 'rm', 'cli-vol'], { env });
  assert.equal(r.code, 0, r.stderr);
});

test('the id "tmp" is an ordinary id; concurrent creates and deletes of one id never answer 500', async () => {
  let r = await post('/volumes', { id: 'tmp', name: 'tmpvol', size_gb: 1 });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.id, 'tmp');
  assert.equal(await del('/volumes/tmp'), 204);
  // Rounds of two creates and a delete of the same id, at once.
  const statuses = [];
  for (let round = 0; round < 6; round++) {
    const rs = await Promise.all([
      post('/volumes', { id: 'racer', name: `racer-a-${round}`, size_gb: 1 }).then((x) => x.status),
      post('/volumes', { id: 'racer', name: `racer-b-${round}`, size_gb: 1 }).then((x) => x.status),
      del('/volumes/racer'),
    ]);
    statuses.push(...rs);
    await del('/volumes/racer');
  }
  assert.ok(statuses.every((s) => [201, 204, 404, 409].includes(s)), statuses.join(','));
  assert.ok(statuses.includes(201));
  // Nothing left behind: no row, no folder, no staging leftovers.
  assert.equal((await d.fetch('/volumes/racer', { token })).status, 404);
  assert.ok(!existsSync(join(d.dataDir, 'volumes', 'racer')));
  assert.deepEqual(readdirSync(join(d.dataDir, 'volumes', '.tmp')), []);
});
