// Images end to end: a real docker-registry on loopback serving images this
// test builds, the real daemon pulling and converting them, and the disks
// checked by extracting them with fsck.erofs. Failure cases must end
// `failed` with a clear error and leave no disk, temp dir or partial blob.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, lstatSync, existsSync, rmSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { waitImage, pull, enc, diskPath, extractErofs, erofsMode, erofsNid } from '../harness/images.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';
import { startTokenProxy } from '../registry/tokenproxy.mjs';
import { startFaultProxy } from '../registry/faultproxy.mjs';

let reg, d, token, fx;
before(async () => {
  reg = await startRegistry();
  fx = await pushFixtures(reg);
  d = await startDaemon({ env: { PULL_STALL_TIMEOUT: '3' } });
  token = d.token();
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

const ref = (repo, r = reg) => `${r.host}/${repo}`;

// Nothing half-made: no tmp conversions, no partial blobs.
function assertNoLeftovers() {
  const tmp = join(d.dataDir, 'images', 'tmp');
  assert.deepEqual(existsSync(tmp) ? readdirSync(tmp) : [], [], 'images/tmp is empty');
  const blobs = join(d.dataDir, 'blobs', 'sha256');
  const parts = existsSync(blobs) ? readdirSync(blobs).filter((f) => f.includes('.part')) : [];
  assert.deepEqual(parts, [], 'no partial blobs');
}

test('pull busybox: 202 pending, then ready with config and an erofs disk', async () => {
  const name = ref('test/busybox:latest');
  const r = await pull(d, token, { name, tags: { team: 'core' } });
  assert.equal(r.status, 202);
  assert.equal(r.body.name, name);
  assert.ok(['pending', 'pulling', 'converting', 'ready'].includes(r.body.status));
  assert.equal(r.body.created_at.length > 0, true);
  const { img } = await waitImage(d, token, name);
  assert.equal(img.status, 'ready', img.error);
  assert.match(img.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(img.digest, fx['test/busybox'].digest);
  assert.equal(img.platform, 'linux/amd64');
  assert.deepEqual(img.cmd, ['/bin/sh']);
  assert.equal(img.entrypoint, null);
  assert.equal(img.env.FOO, 'bar');
  assert.equal(img.working_dir, '/srv');
  assert.deepEqual(img.tags, { team: 'core' });
  assert.equal(img.queue_position, null);
  assert.equal(img.error, null);
  const disk = diskPath(d, img.digest);
  assert.ok(disk, 'disk exists');
  assert.equal(img.size_bytes, statSync(disk).size);
  const root = extractErofs(disk);
  try {
    assert.ok(statSync(join(root, 'bin/busybox')).size > 100000);
    assert.equal(lstatSync(join(root, 'bin/sh')).isSymbolicLink(), true);
  } finally { rmSync(root, { recursive: true, force: true }); }
  assertNoLeftovers();
});

test('short and long forms of a name find the same image; list and tag filter', async () => {
  const name = ref('test/busybox:latest');
  const viaShort = await d.fetch(`/images/${enc(ref('test/busybox'))}`, { token });
  assert.equal(viaShort.status, 200);
  assert.equal((await viaShort.json()).name, name);
  let r = await d.fetch('/images', { token });
  assert.ok((await r.json()).some((i) => i.name === name));
  r = await d.fetch('/images?tags[team]=core', { token });
  assert.deepEqual((await r.json()).map((i) => i.name), [name]);
  r = await d.fetch('/images?tags[team]=nobody', { token });
  assert.deepEqual(await r.json(), []);
});

test('pulling a ready image again returns it at once; by digest it shares the disk', async () => {
  const name = ref('test/busybox:latest');
  const again = await pull(d, token, { name });
  assert.equal(again.status, 202);
  assert.equal(again.body.status, 'ready');
  const byDigest = `${ref('test/busybox')}@${fx['test/busybox'].digest}`;
  await pull(d, token, { name: byDigest });
  const { img } = await waitImage(d, token, byDigest);
  assert.equal(img.status, 'ready', img.error);
  assert.equal(img.name, byDigest);
  assert.equal(img.digest, fx['test/busybox'].digest);
  // Deleting one name keeps the disk the other still uses.
  let r = await d.fetch(`/images/${enc(byDigest)}`, { method: 'DELETE', token });
  assert.equal(r.status, 204);
  assert.ok(diskPath(d, img.digest));
  r = await d.fetch(`/images/${enc(byDigest)}`, { token });
  assert.equal(r.status, 404);
});

test('layers: whiteouts, opaque dirs, hard links, owners, modes and xattrs', async () => {
  const name = ref('test/layers:latest');
  await pull(d, token, { name });
  const { img } = await waitImage(d, token, name);
  assert.equal(img.status, 'ready', img.error);
  const disk = diskPath(d, img.digest);
  const root = extractErofs(disk);
  try {
    for (const [p, present] of Object.entries(fx['test/layers'].expect.paths)) {
      assert.equal(existsSync(join(root, p)) || isLink(join(root, p)), present, `${p} present=${present}`);
    }
    for (const [p, { uid, gid, mode }] of Object.entries(fx['test/layers'].expect.owners || {})) {
      const st = lstatSync(join(root, p));
      assert.equal(st.uid, uid, `${p} uid`);
      assert.equal(st.gid, gid, `${p} gid`);
      assert.equal(erofsMode(disk, `/${p}`) & 0o7777, mode, `${p} mode`);
    }
    for (const [a, b] of fx['test/layers'].expect.hardlinks || []) {
      assert.equal(erofsNid(disk, `/${a}`), erofsNid(disk, `/${b}`), `${a} and ${b} are one inode`);
    }
    const ex = fx['test/layers'].expect;
    for (const [p, text] of Object.entries(ex.contents)) assert.equal(readFileSync(join(root, p), 'utf8'), text, `${p} content`);
    for (const [p, target] of Object.entries(ex.symlinks)) assert.equal(readlinkSync(join(root, p)), target, `${p} target`);
    for (const p of ex.fifos) assert.ok(lstatSync(join(root, p)).isFIFO(), `${p} is a fifo`);
    // fsck.erofs does not extract xattrs; the inode must carry some.
    for (const p of Object.keys(ex.xattrs)) {
      const info = execFileSync('dump.erofs', [`--path=/${p}`, disk], { encoding: 'utf8' });
      assert.match(info, /Xattr size: [1-9]/, `${p} has xattrs`);
    }
  } finally { rmSync(root, { recursive: true, force: true }); }
});

function isLink(p) {
  try { return lstatSync(p).isSymbolicLink(); } catch { return false; }
}

test('multi-platform index: the host platform is chosen; arm64 on request', async () => {
  const name = ref('test/multi:latest');
  await pull(d, token, { name });
  let { img } = await waitImage(d, token, name);
  assert.equal(img.status, 'ready', img.error);
  assert.equal(img.platform, 'linux/amd64');
  let root = extractErofs(diskPath(d, img.digest));
  assert.match(readFileSync(join(root, 'platform'), 'utf8'), /linux\/amd64/);
  rmSync(root, { recursive: true, force: true });
  // Same name, other platform: delete then pull arm64.
  assert.equal((await d.fetch(`/images/${enc(name)}`, { method: 'DELETE', token })).status, 204);
  await pull(d, token, { name, platform: 'linux/arm64' });
  ({ img } = await waitImage(d, token, name));
  assert.equal(img.status, 'ready', img.error);
  assert.match(img.platform, /^linux\/arm64(\/v8)?$/);
  root = extractErofs(diskPath(d, img.digest));
  assert.match(readFileSync(join(root, 'platform'), 'utf8'), /linux\/arm64/);
  rmSync(root, { recursive: true, force: true });
});

test('a large layer streams through and verifies', async () => {
  const name = ref('test/large:latest');
  await pull(d, token, { name });
  const { img } = await waitImage(d, token, name);
  assert.equal(img.status, 'ready', img.error);
  assert.ok(img.size_bytes > 64 * 1024 * 1024);
});

test('uncompressed layers are accepted', async () => {
  const name = ref('test/uncompressed:latest');
  await pull(d, token, { name });
  const { img } = await waitImage(d, token, name);
  assert.equal(img.status, 'ready', img.error);
});

test('bad references are 400 invalid_name; bad platform 400; bad tags 400', async () => {
  for (const name of ['', 'UPPER/case', 'a//b', 'x:', 'https://evil/x', 'a@sha256:123']) {
    const r = await pull(d, token, { name });
    assert.equal(r.status, 400, name);
    assert.equal(r.body.code, name === '' ? 'invalid_name' : 'invalid_name', name);
  }
  let r = await pull(d, token, { name: 'alpine', platform: 'windows/amd64' });
  assert.equal(r.status, 400);
  assert.equal(r.body.code, 'invalid_platform');
  r = await pull(d, token, { name: 'alpine', tags: { 'bad key!': 'x' } });
  assert.equal(r.status, 400);
  r = await pull(d, token, { nme: 'alpine' });
  assert.equal(r.status, 400);
  assert.equal(r.body.code, 'unknown_field');
  assert.match(r.body.message, /`nme` is not a field/);
  r = await pull(d, token, { tags: {} });
  assert.equal(r.status, 400);
  assert.match(r.body.message, /name is required/);
  r = await pull(d, token, { name: 42 });
  assert.equal(r.status, 400);
  assert.match(r.body.message, /name must be a string/);
  const raw = await d.fetch('/images', { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: '{"name": "alpine",' });
  assert.equal(raw.status, 400);
  assert.equal((await raw.json()).code, 'invalid_json');
  const ct = await d.fetch('/images', { method: 'POST', token, headers: { 'content-type': 'text/plain' }, body: 'alpine' });
  assert.equal(ct.status, 415);
  const bad = await d.fetch(`/images/${enc('Not Valid')}`, { token });
  assert.equal(bad.status, 400);
  const missing = await d.fetch(`/images/${enc(ref('test/nothing:here'))}`, { token });
  assert.equal(missing.status, 404);
});

test('unknown repository and unknown tag end failed with a clear error', async () => {
  for (const repo of ['test/nope:latest', 'test/busybox:nosuchtag']) {
    const name = ref(repo);
    const r = await pull(d, token, { name });
    assert.equal(r.status, 202);
    const { img } = await waitImage(d, token, name);
    assert.equal(img.status, 'failed');
    assert.match(img.error, /not found/i);
    assert.match(img.error, new RegExp(repo.split(':')[0].replace('/', '\\/')));
  }
  assertNoLeftovers();
});

test('a layer with a path escape fails the pull and writes nothing outside', async () => {
  const name = ref('test/escape:latest');
  await pull(d, token, { name });
  const { img } = await waitImage(d, token, name);
  assert.equal(img.status, 'failed');
  assert.match(img.error, /\.\./);
  assert.equal(existsSync(join(d.dataDir, 'images', 'escape-marker')), false);
  assert.equal(existsSync('/escape-marker'), false);
  assertNoLeftovers();
});

test('a corrupted blob fails digest verification and is not cached', async () => {
  const fp = await startFaultProxy(reg, { mode: 'corrupt' });
  try {
    const name = ref('test/large:latest', fp).replace('large', 'large');
    // A fresh daemon so nothing is cached from the earlier pull.
    const d2 = await startDaemon();
    try {
      const t2 = d2.token();
      await pull(d2, t2, { name });
      const { img } = await waitImage(d2, t2, name);
      assert.equal(img.status, 'failed');
      assert.match(img.error, /does not match its digest/);
      const blobs = join(d2.dataDir, 'blobs', 'sha256');
      for (const f of readdirSync(blobs)) assert.ok(!f.includes('.part'), f);
      assert.equal(existsSync(join(blobs, fx['test/large'].layerDigests[0].slice(7))), false);
    } finally { await d2.stop(); }
  } finally { await fp.stop(); }
});

test('a registry that dies mid-blob: retried, then failed with the cause', async () => {
  const fp = await startFaultProxy(reg, { mode: 'truncate' });
  const d2 = await startDaemon();
  try {
    const t2 = d2.token();
    const name = ref('test/large:latest', fp);
    await pull(d2, t2, { name });
    const { img } = await waitImage(d2, t2, name);
    assert.equal(img.status, 'failed');
    assert.match(img.error, /attempts/);
  } finally { await d2.stop(); await fp.stop(); }
});

test('a stalled registry is cut off after PULL_STALL_TIMEOUT', async () => {
  const fp = await startFaultProxy(reg, { mode: 'stall' });
  const d2 = await startDaemon({ env: { PULL_STALL_TIMEOUT: '1' } });
  try {
    const t2 = d2.token();
    const name = ref('test/large:latest', fp);
    await pull(d2, t2, { name });
    const { img } = await waitImage(d2, t2, name, { timeoutMs: 60000 });
    assert.equal(img.status, 'failed');
    assert.match(img.error, /speed|timed? ?out|Operation too slow/i);
  } finally { await d2.stop(); await fp.stop(); }
});

test('a 503 from the registry is retried and the pull succeeds', async () => {
  const fp = await startFaultProxy(reg, { mode: '5xx-once' });
  const d2 = await startDaemon();
  try {
    const t2 = d2.token();
    const name = ref('test/busybox:latest', fp);
    await pull(d2, t2, { name });
    const { img } = await waitImage(d2, t2, name);
    assert.equal(img.status, 'ready', img.error);
  } finally { await d2.stop(); await fp.stop(); }
});

test('token auth: anonymous fails, credentials work, a wrong password is clear', async () => {
  const tp = await startTokenProxy(reg, { username: 'alice', password: 's3cret' });
  try {
    const name = ref('test/busybox:latest', tp);
    let r = await pull(d, token, { name });
    let { img } = await waitImage(d, token, name);
    assert.equal(img.status, 'failed');
    assert.match(img.error, /refused|denied|unauthorized/i);
    r = await pull(d, token, { name, credentials: { username: 'alice', password: 'wrong' } });
    assert.equal(r.status, 202);
    ({ img } = await waitImage(d, token, name));
    assert.equal(img.status, 'failed');
    assert.match(img.error, /refused the credentials/);
    await pull(d, token, { name, credentials: { username: 'alice', password: 's3cret' } });
    ({ img } = await waitImage(d, token, name));
    assert.equal(img.status, 'ready', img.error);
    assert.ok(tp.tokensIssued() >= 1);
    // Credentials are never stored.
    const db = readFileSync(join(d.dataDir, 'hypeman.db'));
    assert.equal(db.includes('s3cret'), false);
  } finally { await tp.stop(); }
});

test('concurrent pulls of one image share the work', async () => {
  const d2 = await startDaemon();
  try {
    const t2 = d2.token();
    const name = ref('test/layers:latest');
    const rs = await Promise.all([1, 2, 3].map(() => pull(d2, t2, { name })));
    for (const r of rs) assert.equal(r.status, 202);
    const { img } = await waitImage(d2, t2, name);
    assert.equal(img.status, 'ready', img.error);
    const converted = d2.log.split('\n').filter((l) => l.includes('msg="converted"')).length;
    assert.equal(converted, 1);
  } finally { await d2.stop(); }
});

test('a full disk fails the pull cleanly', async () => {
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const mnt = mkdtempSync(join(tmpdir(), 'hypeman-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mnt]);
  try {
    const d2 = await startDaemon({ env: { DATA_DIR: mnt } });
    try {
      const t2 = d2.token();
      const name = ref('test/large:latest');
      await pull(d2, t2, { name });
      const { img } = await waitImage(d2, t2, name);
      assert.equal(img.status, 'failed');
      assert.match(img.error, /no space left/i);
      const blobs = join(mnt, 'blobs', 'sha256');
      for (const f of readdirSync(blobs)) assert.ok(!f.includes('.part'), f);
      assert.deepEqual(readdirSync(join(mnt, 'images', 'tmp')), []);
      // The daemon is still healthy.
      assert.equal((await d2.fetch('/health')).status, 200);
    } finally { await d2.stop({ keepData: true }); }
  } finally {
    execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
});

test('an interrupted pull is resumed after a restart', async () => {
  const fp = await startFaultProxy(reg, { mode: 'stall' });
  const d2 = await startDaemon({ env: { PULL_STALL_TIMEOUT: '30' } });
  const t2 = d2.token();
  const name = ref('test/large:latest', fp);
  await pull(d2, t2, { name });
  await new Promise((res) => setTimeout(res, 1000));
  await d2.stop({ keepData: true });
  fp.setMode('none');
  const d3 = await startDaemon({ env: { DATA_DIR: d2.dataDir } });
  try {
    const { img } = await waitImage(d3, d3.token(), name);
    assert.equal(img.status, 'ready', img.error);
  } finally { await d3.stop(); await fp.stop(); }
});

test('delete: 204, then 404; an unknown image is 404', async () => {
  const name = ref('test/uncompressed:latest');
  const { img } = await waitImage(d, token, name);
  const disk = diskPath(d, img.digest);
  let r = await d.fetch(`/images/${enc(name)}`, { method: 'DELETE', token });
  assert.equal(r.status, 204);
  assert.equal(existsSync(disk), false);
  r = await d.fetch(`/images/${enc(name)}`, { method: 'DELETE', token });
  assert.equal(r.status, 404);
  assert.equal((await r.json()).code, 'not_found');
});

test('deleting the last image made from a layer removes its blob; blobs still in use stay', async () => {
  const d2 = await startDaemon();
  const t2 = d2.token();
  try {
    const blobsDir = join(d2.dataDir, 'blobs', 'sha256');
    const blobs = () => readdirSync(blobsDir).filter((f) => /^[0-9a-f]{64}$/.test(f)).sort();
    const bb = ref('test/busybox:latest');
    const bbDigest = `${ref('test/busybox')}@${fx['test/busybox'].digest}`;
    const other = ref('test/uncompressed:latest');
    for (const name of [bb, bbDigest, other]) {
      await pull(d2, t2, { name });
      assert.equal((await waitImage(d2, t2, name)).img.status, 'ready');
    }
    const layersOf = (digest) => readFileSync(join(d2.dataDir, 'images', digest.slice(7), 'layers'), 'utf8').split('\n').filter(Boolean).sort();
    const bbLayers = layersOf(fx['test/busybox'].digest);
    const otherImg = (await waitImage(d2, t2, other)).img;
    const otherLayers = layersOf(otherImg.digest);
    assert.ok(bbLayers.length > 0 && otherLayers.length > 0);
    const every = [...new Set([...bbLayers, ...otherLayers])].sort();
    assert.ok(every.every((b) => blobs().includes(b)));
    const del = async (name) => assert.equal((await d2.fetch(`/images/${enc(name)}`, { method: 'DELETE', token: t2 })).status, 204);
    // One of two names for the same disk: every layer stays (config blobs are only a
    // cache of what each disk's config.json holds, and go).
    await del(bb);
    assert.deepEqual(blobs(), every);
    // The last name: its disk goes, and the blobs only it used.
    await del(bbDigest);
    assert.deepEqual(blobs(), otherLayers);
    assert.match(d2.log, /msg="blobs collected" count=\d+ bytes=\d+/);
    await del(other);
    assert.deepEqual(blobs(), []);
    // A pull after the collection fetches the layers again and works.
    await pull(d2, t2, { name: bb });
    assert.equal((await waitImage(d2, t2, bb)).img.status, 'ready');
    assert.ok(bbLayers.every((b) => blobs().includes(b)));
  } finally { await d2.stop(); }
});

test('CLI: pull shows progress and ends with the digest; images lists; rmi deletes', async () => {
  const env = { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: token };
  const name = ref('test/uncompressed:latest');
  let r = await runCli(['pull', name], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^${name.replace(/[.]/g, '\\.')} sha256:[0-9a-f]{64} \\(`));
  assert.match(r.stderr, /ready/);
  r = await runCli(['images'], { env });
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^NAME +STATUS/);
  assert.ok(r.stdout.includes(name));
  r = await runCli(['pull', ref('test/nope:latest')], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /hypeman: pull .* failed: .*not found/);
  r = await runCli(['pull', 'Bad Ref'], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\(400 invalid_name\)/);
  r = await runCli(['rmi', name], { env });
  assert.equal(r.code, 0);
  r = await runCli(['rmi', name], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /404 not_found/);
});
