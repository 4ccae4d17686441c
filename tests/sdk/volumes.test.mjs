// The official SDK against /volumes: empty volumes, volumes from a tar.gz
// (whose files are read back out of the ext4 disk with debugfs, without
// mounting it), listing by tags, deletion, and archives that must be
// refused without leaving anything behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Hypeman from '@onkernel/hypeman';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { tarBuffer, gzip } from '../registry/tar.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { readLogs } from '../harness/instances.mjs';

let d, client, reg, image;
before(async () => {
  d = await startDaemon();
  client = new Hypeman({ baseURL: d.url, apiKey: d.token(), maxRetries: 0, timeout: 120000 });
  reg = await startRegistry();
  await pushFixtures(reg);
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, d.token(), { name: image });
  assert.equal((await waitImage(d, d.token(), image)).img.status, 'ready');
});
after(async () => { await d?.stop(); await reg?.stop(); });

// Rewrite the first tar header's size field (and its checksum) to claim `size` bytes.
function claimSize(tar, size) {
  tar.write(size.toString(8).padStart(11, '0') + '\0', 124, 12, 'latin1');
  tar.fill(' ', 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += tar[i];
  tar.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return tar;
}

const disk = (id) => join(d.dataDir, 'volumes', id, 'data.ext4');
const debugfs = (id, cmd) => execFileSync('debugfs', ['-R', cmd, disk(id)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });

test('create, get, list by tags, delete an empty volume', async () => {
  const v = await client.volumes.create({ name: 'data', size_gb: 2, tags: { team: 'db' } });
  assert.match(v.id, /^[a-z0-9]{24}$/);
  assert.equal(v.size_gb, 2);
  assert.deepEqual(v.attachments, []);
  assert.equal(statSync(disk(v.id)).size, 2 * 2 ** 30);
  assert.ok(statSync(disk(v.id)).blocks * 512 < 64 * 2 ** 20, 'the disk is sparse');
  assert.match(debugfs(v.id, 'stats'), /Filesystem magic number:\s+0xEF53/);
  const mine = await client.volumes.create({ id: 'vol-mine', name: 'mine', size_gb: 1 });
  assert.equal(mine.id, 'vol-mine');
  assert.equal((await client.volumes.get('data')).id, v.id);
  assert.equal((await client.volumes.get(v.id.slice(0, 6))).name, 'data');
  assert.deepEqual((await client.volumes.list({ tags: { team: 'db' } })).map((x) => x.id), [v.id]);
  await assert.rejects(client.volumes.create({ name: 'data', size_gb: 1 }), (e) => e.status === 409);
  await assert.rejects(client.volumes.create({ id: 'vol-mine', name: 'other', size_gb: 1 }), (e) => e.status === 409);
  for (const bad of [{ name: 'x', size_gb: 0 }, { name: 'x', size_gb: 1.5 }, { name: 'x' }, { name: 'Bad Name', size_gb: 1 }, { name: 'x', size_gb: 1, id: '../up' }]) {
    await assert.rejects(client.volumes.create(bad), (e) => e.status === 400, JSON.stringify(bad));
  }
  await client.volumes.delete(v.id);
  await client.volumes.delete('mine');
  await assert.rejects(client.volumes.get(v.id), (e) => e.status === 404);
  assert.equal(existsSync(join(d.dataDir, 'volumes', v.id)), false);
});

test('from a tar.gz: the files, modes, owners and links are on the disk', async () => {
  const archive = gzip(tarBuffer([
    { path: 'site', type: 'dir' },
    { path: 'site/index.html', data: '<h1>from archive</h1>\n', mode: 0o640, uid: 33, gid: 33 },
    { path: 'site/latest', type: 'symlink', linkname: 'index.html' },
    { path: 'README', data: 'hello\n' },
  ]));
  const v = await client.volumes.createFromArchive(archive, { name: 'site', size_gb: 1, tags: { src: 'tar' } });
  assert.equal(v.name, 'site');
  assert.deepEqual(v.tags, { src: 'tar' });
  assert.equal(debugfs(v.id, 'cat /site/index.html'), '<h1>from archive</h1>\n');
  assert.equal(debugfs(v.id, 'cat /README'), 'hello\n');
  const st = debugfs(v.id, 'stat /site/index.html');
  assert.match(st, /Mode:\s+0640/);
  assert.match(st, /User:\s+33\s+Group:\s+33/);
  assert.match(debugfs(v.id, 'stat /site/latest'), /Fast link dest: "index.html"/);
  await client.volumes.delete(v.id);
});

test('archives that escape, hold devices, or do not fit are refused and leave nothing', async () => {
  const before = readdirSync(join(d.dataDir, 'volumes')).sort();
  const passwd = readFileSync('/etc/passwd', 'utf8');
  const cases = [
    [tarBuffer([{ path: '../escape', data: 'x' }]), 'unsafe_path'],
    [tarBuffer([{ path: 'ok', type: 'dir' }, { path: 'ok/link', type: 'symlink', linkname: '/etc' }, { path: 'ok/link/passwd', data: 'x' }]), null],
    [tarBuffer([{ path: 'pipe', type: 'fifo' }]), 'unsupported_entry'],
    [tarBuffer([{ path: 'big', data: Buffer.alloc(3 << 20) }]), null],
    [Buffer.from('not an archive at all'), 'invalid_archive'],
  ];
  for (const [body, code] of cases) {
    const r = await d.fetch('/volumes/from-archive?name=bad&size_gb=1', {
      method: 'POST', token: d.token(), headers: { 'content-type': 'application/gzip' }, body: gzip(body),
    });
    const text = await r.text();
    if (code) {
      assert.equal(r.status, 400, text);
      assert.equal(JSON.parse(text).code, code);
    } else {
      // No code given: a case that must work (a link inside, 3 MiB that fits); clean it up.
      // The link to /etc is replaced by a directory inside the volume, never followed.
      assert.equal(r.status, 201, text);
      const id = JSON.parse(text).id;
      if (body.includes('ok/link')) assert.equal(debugfs(id, 'cat /ok/link/passwd'), 'x');
      await d.fetch(`/volumes/${id}`, { method: 'DELETE', token: d.token() });
    }
  }
  // Too large for its volume: declared sizes are checked before anything is
  // written, so a header that claims 1.1 GiB is refused without its data.
  const huge = gzip(claimSize(tarBuffer([{ path: 'a', data: 'x' }]), 1100 * 2 ** 20));
  const r = await d.fetch('/volumes/from-archive?name=huge&size_gb=1', { method: 'POST', token: d.token(), headers: { 'content-type': 'application/gzip' }, body: huge });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).code, 'archive_too_large');
  const r2 = await d.fetch('/volumes/from-archive?size_gb=1', { method: 'POST', token: d.token(), headers: { 'content-type': 'application/gzip' }, body: gzip(tarBuffer([])) });
  assert.equal(r2.status, 400);
  assert.deepEqual(readdirSync(join(d.dataDir, 'volumes')).sort(), before);
  assert.equal(readFileSync('/etc/passwd', 'utf8'), passwd);
  assert.deepEqual(readdirSync(join(d.dataDir, 'volumes', '.tmp')), []);
  assert.deepEqual(await client.volumes.list(), []);
});

test('attach to a stopped instance, start it on the volume, detach', { timeout: 180000 }, async () => {
  const archive = gzip(tarBuffer([{ path: 'greeting', data: 'hi from the volume\n' }]));
  const vol = await client.volumes.createFromArchive(archive, { name: 'greet', size_gb: 1 });
  const inst = await client.instances.create({ name: 'vol-user', image, size: '256MB', vcpus: 1, cmd: ['true'] });
  let w = await client.instances.wait(inst.id, { state: 'Stopped', timeout: '90s' });
  assert.equal(w.state, 'Stopped');
  const attached = await client.instances.volumes.attach(vol.id, { id: inst.id, mount_path: '/greet', readonly: true });
  assert.deepEqual(attached.volumes, [{ volume_id: vol.id, mount_path: '/greet', readonly: true }]);
  assert.deepEqual((await client.volumes.get(vol.id)).attachments, [{ instance_id: inst.id, mount_path: '/greet', readonly: true }]);
  await assert.rejects(client.instances.volumes.attach(vol.id, { id: inst.id, mount_path: '/again' }), (e) => e.status === 409);
  await assert.rejects(client.instances.volumes.attach('missing', { id: inst.id, mount_path: '/x' }), (e) => e.status === 404);
  await assert.rejects(client.volumes.delete(vol.id), (e) => e.status === 409);
  await client.instances.start(inst.id, { cmd: ['sh', '-c', 'cat /greet/greeting; exec sleep 1000'] });
  await client.instances.wait(inst.id, { state: 'Running', timeout: '90s' });
  let lines = [];
  for (let i = 0; i < 100 && !lines.includes('hi from the volume'); i++) {
    lines = await readLogs(d, d.token(), inst.id);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(lines.includes('hi from the volume'), lines.join('\n'));
  // Running: attach and detach are refused.
  await assert.rejects(client.instances.volumes.detach(vol.id, { id: inst.id }), (e) => e.status === 409);
  await client.instances.stop(inst.id);
  const detached = await client.instances.volumes.detach(vol.id, { id: inst.id });
  assert.deepEqual(detached.volumes, []);
  await assert.rejects(client.instances.volumes.detach(vol.id, { id: inst.id }), (e) => e.status === 404);
  await client.instances.delete(inst.id);
  await client.volumes.delete(vol.id);
});

test('CLI: volume create, import, ls, rm', async () => {
  const env = { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: d.token() };
  const work = mkdtempSync(join(tmpdir(), 'hm-vol-'));
  try {
    let r = await runCli(['volume', 'create', 'cli-empty', '--size', '1', '-t', 'k=v'], { env });
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    writeFileSync(join(work, 'a.tar.gz'), gzip(tarBuffer([{ path: 'hello.txt', data: 'from the cli\n' }])));
    r = await runCli(['volume', 'import', 'cli-files', join(work, 'a.tar.gz'), '--size', '1'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(debugfs(r.stdout.trim(), 'cat /hello.txt'), 'from the cli\n');
    r = await runCli(['volume', 'ls'], { env });
    assert.match(r.stdout, /^ID\s+NAME\s+SIZE/);
    assert.match(r.stdout, new RegExp(`${id}\\s+cli-empty\\s+1GB`));
    assert.match(r.stdout, /cli-files/);
    r = await runCli(['volume', 'create', 'cli-empty', '--size', '1'], { env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already exists/);
    r = await runCli(['volume', 'create', 'x'], { env });
    assert.equal(r.code, 2);
    r = await runCli(['volume', 'rm', 'cli-empty', 'cli-files'], { env });
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(['volume', 'ls', '-q'], { env });
    assert.equal(r.stdout, '');
  } finally { rmSync(work, { recursive: true, force: true }); }
});
