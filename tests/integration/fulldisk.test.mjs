// A full disk: the daemon answers 507 insufficient_storage (not 500), a
// volume larger than the free space is refused up front, and deletes still
// work, so space can be freed through the API (the store keeps a reserve
// file for them). A pull that runs out of space while it downloads or while
// it converts ends `failed` with the reason, leaves no partial blob or
// conversion, and succeeds once there is room. The data dir is a tmpfs of this test (`hypeman-full-*`),
// filled by the test itself; nothing else on the host is touched.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { startRegistry, pushImage } from '../registry/registry.mjs';

let mnt, d, token, reg;
const BIG = 24 << 20; // one layer of random bytes: its blob and its disk are each about this size
before(async () => {
  reg = await startRegistry();
  await pushImage(reg, 'test/big', 'latest', { layers: [[{ path: 'big', data: randomBytes(BIG) }]], config: { Cmd: ['/bin/true'] } });
  mnt = mkdtempSync(join(tmpdir(), 'hypeman-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1200m', 'tmpfs', mnt]);
  d = await startDaemon({ env: { DATA_DIR: mnt } });
  token = d.token();
});
after(async () => {
  try { await d?.stop({ keepData: true }); await reg?.stop(); } finally {
    execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
});

const post = async (path, body) => {
  const r = await d.fetch(path, { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
};

// Write zeros into `file` until the filesystem says it is full.
function fill(file) {
  const fd = openSync(file, 'w');
  const buf = Buffer.alloc(4 << 20);
  try {
    for (;;) writeSync(fd, buf);
  } catch (e) {
    if (e.code !== 'ENOSPC') throw e;
  } finally { closeSync(fd); }
}

test('a full data dir: 507 with the reason, deletes still work, and it recovers once space is back', async () => {
  assert.ok(existsSync(join(mnt, '.reserve')), 'the store keeps its reserve');
  let r = await post('/volumes', { name: 'early', size_gb: 1 });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  // Larger than what is free: refused before anything is made.
  r = await post('/volumes', { name: 'huge', size_gb: 2 });
  assert.equal(r.status, 507, JSON.stringify(r.body));
  assert.equal(r.body.code, 'insufficient_storage');
  assert.match(r.body.message, /a 2 GB volume does not fit: \d+ MB are free in /);

  fill(join(mnt, 'filler'));
  r = await post('/volumes', { name: 'late', size_gb: 1 });
  assert.equal(r.status, 507, JSON.stringify(r.body));
  assert.equal(r.body.code, 'insufficient_storage');
  // Deleting is how a user frees space: it works on a full disk.
  const del = await d.fetch('/volumes/early', { method: 'DELETE', token });
  assert.equal(del.status, 204, await del.text());
  assert.equal((await d.fetch('/volumes/early', { token })).status, 404);
  assert.equal((await d.fetch('/health')).status, 200);

  rmSync(join(mnt, 'filler'));
  r = await post('/volumes', { name: 'after', size_gb: 1 });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal((await d.fetch('/volumes/after', { method: 'DELETE', token })).status, 204);
  assert.ok(existsSync(join(mnt, '.reserve')), 'the reserve is back once there is room');
});

// Fill the disk, then give back about `free` bytes of it.
function fillLeaving(file, free) {
  fill(file);
  truncateSync(file, Math.max(0, statSync(file).size - free));
}

// Nothing half-made by a failed pull: no partial blob, no conversion in progress.
function assertNoLeftovers() {
  const tmp = join(mnt, 'images', 'tmp');
  assert.deepEqual(existsSync(tmp) ? readdirSync(tmp) : [], [], 'images/tmp is empty');
  const blobs = join(mnt, 'blobs', 'sha256');
  assert.deepEqual((existsSync(blobs) ? readdirSync(blobs) : []).filter((f) => f.includes('.part')), [], 'no partial blobs');
}

test('a pull that runs out of space fails with the reason, leaves nothing half-made, and works once there is room', async () => {
  const name = `${reg.host}/test/big:latest`;
  const filler = join(mnt, 'filler');
  // Room for a few MB: the layer's download stops short.
  fillLeaving(filler, 4 << 20);
  let r = await pull(d, token, { name });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  let { img } = await waitImage(d, token, name, { timeoutMs: 60000 });
  assert.equal(img.status, 'failed');
  assert.match(img.error, /^write blob sha256:[0-9a-f]{64}: No space left on device$/);
  assertNoLeftovers();

  // Room for the blob but not for its disk as well: the conversion fails.
  rmSync(filler);
  fillLeaving(filler, BIG + (12 << 20));
  r = await pull(d, token, { name });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  ({ img } = await waitImage(d, token, name, { timeoutMs: 60000 }));
  assert.equal(img.status, 'failed');
  assert.match(img.error, /No space left on device/);
  assert.doesNotMatch(img.error, /^write blob/, 'it got as far as converting');
  assertNoLeftovers();

  rmSync(filler);
  r = await pull(d, token, { name });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  ({ img } = await waitImage(d, token, name, { timeoutMs: 60000 }));
  assert.equal(img.status, 'ready', img.error);
  assert.equal((await d.fetch(`/images/${encodeURIComponent(name)}`, { method: 'DELETE', token })).status, 204);
});
