// Self-test of the test-registry toolkit (tar.mjs, registry.mjs,
// tokenproxy.mjs, faultproxy.mjs, oci.mjs): fixtures are retrievable over
// the distribution API, the proxies behave as documented, and skopeo/umoci
// accept what we write. Run: node --test tests/registry/selftest.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import http from 'node:http';
import { mkdtempSync, rmSync, readFileSync, lstatSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, pushFixtures, pushImage, busyboxRoot, sha256, MT, ACCEPT_ALL, regFetch } from './registry.mjs';
import { startTokenProxy } from './tokenproxy.mjs';
import { startFaultProxy } from './faultproxy.mjs';
import { writeOciLayout, writeDockerSave } from './oci.mjs';
import { tarBuffer, gzip } from './tar.mjs';

const run = promisify(execFile); // async: skopeo may talk to proxies in this process
const skopeo = (...args) => run('skopeo', ['--insecure-policy', ...args], { maxBuffer: 64 << 20 });

let reg, fx, work;
const cleanups = [];
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'hypeman-regtest-'));
  reg = await startRegistry();
  fx = await pushFixtures(reg);
});
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function getManifest(base, repo, ref, headers = {}) {
  const r = await fetch(`${base}/v2/${repo}/manifests/${ref}`, { headers: { accept: ACCEPT_ALL, ...headers } });
  const buf = Buffer.from(await r.arrayBuffer());
  return { r, buf, json: r.status === 200 ? JSON.parse(buf) : null };
}
async function getBlob(base, repo, digest, headers = {}) {
  const r = await fetch(`${base}/v2/${repo}/blobs/${digest}`, { headers });
  return { r, buf: Buffer.from(await r.arrayBuffer()) };
}

test('tar writer: GNU tar reads long names, links, modes, owners, xattrs, escapes', async () => {
  const long = 'd/' + 'x'.repeat(200);
  const tar = tarBuffer([
    { path: 'd', type: 'dir', mode: 0o700 }, { path: long, data: 'long' },
    { path: 'l', type: 'symlink', linkname: 'y'.repeat(150) }, { path: 'h', type: 'hardlink', linkname: long },
    { path: 'f', type: 'fifo' }, { path: 'o', data: 'o', uid: 1000, gid: 1001, mode: 0o640 },
    { path: 'x', data: 'x', xattrs: { 'user.test': '1' } },
    { path: '../escape', data: 'e' }, { path: '/abs', data: 'a' }, { path: 'a/.wh..wh..opq' },
  ]);
  assert.equal(tar.length % 512, 0);
  const f = join(work, 't.tar');
  writeFileSync(f, tar);
  const { stdout } = await run('tar', ['--numeric-owner', '-tvf', f]);
  const lines = stdout.trim().split('\n');
  assert.match(lines[0], /^drwx------ 0\/0 .* d\/$/);
  assert.ok(lines[1].endsWith(' ' + long));
  assert.ok(lines[2].endsWith(`l -> ${'y'.repeat(150)}`));
  assert.ok(lines[3].endsWith(`h link to ${long}`));
  assert.match(lines[4], /^p/);
  assert.match(lines[5], /^-rw-r----- 1000\/1001 +1 /);
  assert.ok(stdout.includes(' ../escape') && stdout.includes(' /abs') && stdout.includes(' a/.wh..wh..opq'));
  const xa = await run('tar', ['--xattrs', '--xattrs-include=*', '-tvvf', f]);
  assert.match(xa.stdout, /x: +1 user\.test/);
  writeFileSync(join(work, 't.tar.gz'), gzip(tar));
  await run('sh', ['-c', `gzip -dc < '${join(work, 't.tar.gz')}' | cmp - '${f}'`]);
});

test('every fixture is retrievable: manifests by tag and digest, blobs match their digests', async () => {
  for (const repo of ['test/busybox', 'test/layers', 'test/large', 'test/escape', 'test/uncompressed']) {
    const img = fx[repo];
    const { r, buf, json } = await getManifest(reg.url, repo, 'latest');
    assert.equal(r.status, 200, repo);
    assert.equal(r.headers.get('content-type'), img.mediaType, repo);
    assert.equal(r.headers.get('docker-content-digest'), img.digest, repo);
    assert.equal(sha256(buf), img.digest, repo);
    assert.equal((await getManifest(reg.url, repo, img.digest)).r.status, 200);
    for (const desc of [json.config, ...json.layers]) {
      const b = await getBlob(reg.url, repo, desc.digest);
      assert.equal(b.r.status, 200, `${repo} ${desc.digest}`);
      assert.equal(b.buf.length, desc.size);
      assert.equal(sha256(b.buf), desc.digest);
    }
    const cfg = JSON.parse((await getBlob(reg.url, repo, json.config.digest)).buf);
    assert.equal(cfg.rootfs.diff_ids.length, json.layers.length);
    assert.deepEqual(cfg.rootfs.diff_ids, img.diffIds);
  }
  const bb = fx['test/busybox'];
  assert.equal(bb.mediaType, MT.oci.manifest);
  assert.equal(bb.manifest.layers[0].mediaType, MT.oci.layerGzip);
  assert.deepEqual(bb.config.config, {
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'FOO=bar'],
    Entrypoint: null, Cmd: ['/bin/sh'], WorkingDir: '/srv', User: '',
  });
  assert.equal(fx['test/layers'].mediaType, MT.docker.manifest);
  assert.equal(fx['test/layers'].manifest.layers.length, 3);
  assert.equal(fx['test/uncompressed'].manifest.layers[0].mediaType, MT.oci.layer);
  assert.ok(fx['test/large'].manifest.layers[0].size > 64 << 20, 'large layer is incompressible');

  // The index and both platform manifests.
  const multi = fx['test/multi'];
  const { r, json } = await getManifest(reg.url, 'test/multi', 'latest');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), MT.oci.index);
  assert.equal(r.headers.get('docker-content-digest'), multi.digest);
  assert.deepEqual(json.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`).sort(), ['linux/amd64', 'linux/arm64']);
  for (const arch of ['amd64', 'arm64']) {
    const m = json.manifests.find((x) => x.platform.architecture === arch);
    assert.equal(m.digest, multi[arch].digest);
    const child = await getManifest(reg.url, 'test/multi', m.digest);
    const layer = await getBlob(reg.url, 'test/multi', child.json.layers[0].digest);
    const tar = (await import('node:zlib')).gunzipSync(layer.buf);
    assert.ok(tar.includes(Buffer.from(arch === 'amd64' ? 'linux/amd64\n' : 'linux/arm64/v8\n')));
  }
});

test('skopeo + umoci apply test/layers as the fixture says (whiteouts, links, owners, xattrs)', async () => {
  const layout = join(work, 'layers-oci');
  await skopeo('copy', '--src-tls-verify=false', `docker://${reg.host}/test/layers:latest`, `oci:${layout}:latest`);
  const bundle = join(work, 'layers-bundle');
  await run('umoci', ['unpack', '--image', `${layout}:latest`, bundle]);
  const root = join(bundle, 'rootfs');
  const ex = fx['test/layers'].expect;
  const exists = (p) => { try { lstatSync(join(root, p)); return true; } catch { return false; } };
  for (const [p, present] of Object.entries(ex.paths)) assert.equal(exists(p), present, p);
  for (const [p, c] of Object.entries(ex.contents)) assert.equal(readFileSync(join(root, p), 'utf8'), c, p);
  for (const [p, { uid, gid, mode }] of Object.entries(ex.owners)) {
    const st = lstatSync(join(root, p));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [uid, gid, mode], p);
  }
  for (const [p, target] of Object.entries(ex.symlinks)) assert.equal(readlinkSync(join(root, p)), target);
  for (const [a, b] of ex.hardlinks) assert.equal(lstatSync(join(root, a)).ino, lstatSync(join(root, b)).ino);
  for (const p of ex.fifos) assert.ok(lstatSync(join(root, p)).isFIFO());
  const xa = await run('getfattr', ['-n', 'user.test', '--only-values', join(root, 'xattr')]).catch((e) => ({ err: e }));
  if (!xa.err) assert.equal(xa.stdout, '1'); // getfattr may be missing; umoci applied it or failed above
});

test('token proxy: challenge, /token auth, then the manifest with a token', async () => {
  const tp = await startTokenProxy(reg, { username: 'alice', password: 's3cret' });
  cleanups.push(() => tp.stop());
  let { r } = await getManifest(tp.url, 'test/busybox', 'latest');
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'),
    `Bearer realm="${tp.url}/token",service="test-registry",scope="repository:test/busybox:pull"`);
  assert.equal((await fetch(`${tp.url}/v2/`)).status, 401);
  const basic = (u, p) => ({ authorization: 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64') });
  const tokenUrl = `${tp.url}/token?service=test-registry&scope=repository:test/busybox:pull`;
  assert.equal((await fetch(tokenUrl)).status, 401);
  assert.equal((await fetch(tokenUrl, { headers: basic('alice', 'wrong') })).status, 401);
  assert.equal(tp.tokensIssued(), 0);
  const tr = await fetch(tokenUrl, { headers: basic('alice', 's3cret') });
  assert.equal(tr.status, 200);
  const tok = await tr.json();
  assert.ok(tok.token && tok.token === tok.access_token && tok.expires_in === 300);
  assert.equal(tp.tokensIssued(), 1);
  assert.deepEqual(tp.tokenRequests()[0], { service: 'test-registry', scope: ['repository:test/busybox:pull'], user: 'alice' });
  const auth = { authorization: `Bearer ${tok.token}` };
  ({ r } = await getManifest(tp.url, 'test/busybox', 'latest', auth));
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('docker-content-digest'), fx['test/busybox'].digest);
  assert.equal(r.headers.get('content-type'), MT.oci.manifest);
  const b = await getBlob(tp.url, 'test/busybox', fx['test/busybox'].layerDigests[0], auth);
  assert.equal(b.r.status, 200);
  assert.equal(Number(b.r.headers.get('content-length')), b.buf.length);
  assert.equal(sha256(b.buf), fx['test/busybox'].layerDigests[0]);
  assert.equal((await getManifest(tp.url, 'test/busybox', 'latest', { authorization: 'Bearer nope' })).r.status, 401);
  // A real client doing the whole dance.
  const { stdout } = await skopeo('inspect', '--tls-verify=false', '--creds', 'alice:s3cret', `docker://${tp.host}/test/busybox:latest`);
  assert.equal(JSON.parse(stdout).Digest, fx['test/busybox'].digest);
  await assert.rejects(skopeo('inspect', '--tls-verify=false', '--creds', 'alice:bad', `docker://${tp.host}/test/busybox:latest`));

  // Anonymous mode: tokens for anyone, but still required.
  const anon = await startTokenProxy(reg);
  cleanups.push(() => anon.stop());
  assert.equal((await getManifest(anon.url, 'test/busybox', 'latest')).r.status, 401);
  const at = await (await fetch(`${anon.url}/token?service=test-registry&scope=repository:test/busybox:pull`)).json();
  assert.equal((await getManifest(anon.url, 'test/busybox', 'latest', { authorization: `Bearer ${at.token}` })).r.status, 200);
  const anonInspect = await skopeo('inspect', '--tls-verify=false', `docker://${anon.host}/test/busybox:latest`);
  assert.equal(JSON.parse(anonInspect.stdout).Digest, fx['test/busybox'].digest);
  assert.ok(anon.tokensIssued() >= 2);
});

test('htpasswd registry: Basic challenge, push and pull with credentials', async () => {
  const r2 = await startRegistry({ htpasswd: { bob: 'hunter2' } });
  cleanups.push(() => r2.stop());
  const r = await fetch(`${r2.url}/v2/`);
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Basic realm="test-registry"');
  assert.equal((await regFetch(r2, '/v2/')).status, 200);
  const img = await pushImage(r2, 'priv/bb', 'v1', { layers: [[{ path: 'hello', data: 'hi' }]] });
  const { stdout } = await skopeo('inspect', '--tls-verify=false', '--creds', 'bob:hunter2', `docker://${r2.host}/priv/bb:v1`);
  assert.equal(JSON.parse(stdout).Digest, img.digest);
  await assert.rejects(skopeo('inspect', '--tls-verify=false', '--creds', 'bob:nope', `docker://${r2.host}/priv/bb:v1`));
});

test('fault proxy: corrupt, truncate, stall, 5xx-once, none', async () => {
  const large = fx['test/large'].layerDigests[0];
  const size = fx['test/large'].manifest.layers[0].size;
  const fp = await startFaultProxy(reg, { mode: 'corrupt' });
  cleanups.push(() => fp.stop());
  let b = await getBlob(fp.url, 'test/large', large);
  assert.equal(b.r.status, 200);
  assert.equal(b.buf.length, size);
  assert.notEqual(sha256(b.buf), large);
  // Manifests and small blobs pass untouched.
  assert.equal((await getManifest(fp.url, 'test/large', 'latest')).r.headers.get('docker-content-digest'), fx['test/large'].digest);
  const cfg = await getBlob(fp.url, 'test/large', fx['test/large'].configDigest);
  assert.equal(sha256(cfg.buf), fx['test/large'].configDigest);

  fp.setMode('5xx-once');
  const bbLayer = fx['test/busybox'].layerDigests[0];
  assert.equal((await getBlob(fp.url, 'test/busybox', bbLayer)).r.status, 503);
  b = await getBlob(fp.url, 'test/busybox', bbLayer);
  assert.equal(b.r.status, 200);
  assert.equal(sha256(b.buf), bbLayer);
  assert.equal((await getBlob(fp.url, 'test/busybox', fx['test/busybox'].configDigest)).r.status, 200, 'small blobs never fail');

  fp.setMode('truncate');
  await assert.rejects(getBlob(fp.url, 'test/large', large));

  fp.setMode('stall');
  const got = await new Promise((res, rej) => {
    let n = 0;
    const req = http.get(`${fp.url}/v2/test/large/blobs/${large}`, (resp) => {
      resp.on('data', (c) => { n += c.length; });
      setTimeout(() => { res(n); req.destroy(); }, 1500);
    });
    req.on('error', () => {});
    req.setTimeout(10000, () => rej(new Error('no response')));
  });
  assert.equal(got, size >> 1);

  fp.setMode('none');
  b = await getBlob(fp.url, 'test/large', large);
  assert.equal(sha256(b.buf), large);
  assert.ok(fp.log().some((e) => e.fault === 'stall'));
});

test('writeOciLayout / writeDockerSave output is accepted by skopeo', async () => {
  const layout = join(work, 'layout');
  const img = await writeOciLayout(layout, { name: 'docker.io/library/mine:1', layers: [busyboxRoot(), [{ path: 'extra', data: 'x' }]], config: { Cmd: ['/bin/sh'] } });
  const index = JSON.parse(readFileSync(join(layout, 'index.json')));
  assert.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], '1');
  let { stdout } = await skopeo('inspect', `oci:${layout}:1`);
  let j = JSON.parse(stdout);
  assert.equal(j.Digest, img.digest);
  assert.deepEqual(j.Layers, img.layerDigests);
  ({ stdout } = await skopeo('inspect', '--config', `oci:${layout}:1`));
  assert.deepEqual(JSON.parse(stdout).config.Cmd, ['/bin/sh']);

  const save = join(work, 'save.tar');
  const simg = await writeDockerSave(save, 'saved/app:2', { layers: [busyboxRoot(), [{ path: 'extra', data: 'x' }]], config: { Cmd: ['/bin/true'] } });
  ({ stdout } = await skopeo('inspect', `docker-archive:${save}:saved/app:2`)); // found by its RepoTag
  j = JSON.parse(stdout);
  assert.equal(j.Layers.length, 2);
  ({ stdout } = await skopeo('inspect', '--config', `docker-archive:${save}`));
  j = JSON.parse(stdout);
  assert.deepEqual(j.config.Cmd, ['/bin/true']);
  assert.deepEqual(j.rootfs.diff_ids, simg.diffIds);
  // And a round trip back into an OCI layout that umoci can unpack.
  const back = join(work, 'back');
  await skopeo('copy', `docker-archive:${save}`, `oci:${back}:x`);
  await run('umoci', ['unpack', '--image', `${back}:x`, join(work, 'back-bundle')]);
  assert.equal(readFileSync(join(work, 'back-bundle/rootfs/extra'), 'utf8'), 'x');
  assert.equal(readlinkSync(join(work, 'back-bundle/rootfs/bin/sh')), 'busybox');
});
