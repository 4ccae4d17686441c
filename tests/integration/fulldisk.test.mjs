// A full disk: the daemon answers 507 insufficient_storage (not 500), a
// volume larger than the free space is refused up front, and deletes still
// work, so space can be freed through the API (the store keeps a reserve
// file for them). The data dir is a tmpfs of this test (`hypeman-full-*`),
// filled by the test itself; nothing else on the host is touched.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../harness/daemon.mjs';

let mnt, d, token;
before(async () => {
  mnt = mkdtempSync(join(tmpdir(), 'hypeman-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1200m', 'tmpfs', mnt]);
  d = await startDaemon({ env: { DATA_DIR: mnt } });
  token = d.token();
});
after(async () => {
  try { await d?.stop({ keepData: true }); } finally {
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
