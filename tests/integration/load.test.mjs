// Offline images: `POST /images/load` and `hypeman load` with archives made
// by skopeo (the real tool) from the test registry, by our own OCI-layout
// and docker-save writers, and hostile archives that must be refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { diskPath, extractErofs } from '../harness/images.mjs';
import { startRegistry, pushFixtures, busyboxRoot } from '../registry/registry.mjs';
import { writeOciLayout, writeDockerSave } from '../registry/oci.mjs';
import { tarBuffer } from '../registry/tar.mjs';

let reg, d, token, work;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  token = d.token();
  work = mkdtempSync(join(tmpdir(), 'hypeman-load-'));
});
after(async () => {
  await d?.stop();
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function load(body, name) {
  const r = await d.fetch(`/images/load${name ? `?name=${encodeURIComponent(name)}` : ''}`, {
    method: 'POST', token, headers: { 'content-type': 'application/x-tar' }, body,
  });
  return { status: r.status, body: await r.json() };
}

test('an oci-archive made by skopeo loads and matches the pulled image', async () => {
  const archive = join(work, 'busybox-oci.tar');
  execFileSync('skopeo', ['--insecure-policy', 'copy', '--src-tls-verify=false',
    `docker://${reg.host}/test/busybox:latest`, `oci-archive:${archive}:busybox`], { stdio: 'pipe' });
  const r = await load(readFileSync(archive), 'local/busybox:skopeo');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.name, 'docker.io/local/busybox:skopeo');
  assert.equal(r.body.status, 'ready');
  assert.deepEqual(r.body.cmd, ['/bin/sh']);
  const root = extractErofs(diskPath(d, r.body.digest));
  try { assert.ok(existsSync(join(root, 'bin/busybox'))); } finally { rmSync(root, { recursive: true, force: true }); }
});

test('a docker-archive made by skopeo (classic docker save format) loads with its own name', async () => {
  const archive = join(work, 'busybox-docker.tar');
  execFileSync('skopeo', ['--insecure-policy', 'copy', '--src-tls-verify=false',
    `docker://${reg.host}/test/busybox:latest`, `docker-archive:${archive}:example.com/team/bb:v1`], { stdio: 'pipe' });
  const r = await load(readFileSync(archive));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.name, 'example.com/team/bb:v1');
  assert.match(r.body.digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(r.body.env.FOO, 'bar');
});

test('our own OCI layout and docker-save writers load too', async () => {
  const layout = join(work, 'layout');
  await writeOciLayout(layout, { name: 'docker.io/library/mine:1', layers: [busyboxRoot()], config: { Cmd: ['/bin/sh', '-c', 'echo hi'] } });
  const tarFile = join(work, 'layout.tar');
  execFileSync('tar', ['-C', layout, '-cf', tarFile, '.']);
  let r = await load(readFileSync(tarFile), 'mine:1');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.cmd, ['/bin/sh', '-c', 'echo hi']);
  const save = join(work, 'save.tar');
  await writeDockerSave(save, 'saved/app:2', { layers: [busyboxRoot()], config: { Cmd: ['/bin/true'] } });
  r = await load(readFileSync(save));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.name, 'docker.io/saved/app:2');
});

test('hypeman load FILE and DIR', async () => {
  const env = { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: token };
  const layout = join(work, 'layout-cli');
  await writeOciLayout(layout, { name: 'docker.io/library/clidir:1', layers: [busyboxRoot()], config: { Cmd: ['/bin/sh'] } });
  let r = await runCli(['load', '--name', 'clidir:1', layout], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^docker\.io\/library\/clidir:1 sha256:/);
  const save = join(work, 'save-cli.tar');
  await writeDockerSave(save, 'clifile:3', { layers: [busyboxRoot()], config: {} });
  r = await runCli(['load', save], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /clifile:3/);
  r = await runCli(['load', join(work, 'nope.tar')], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot read/);
});

test('bad archives are 400 and leave nothing behind', async () => {
  const before = readdirSync(join(d.dataDir, 'images')).sort();
  // Not a tar at all.
  let r = await load(Buffer.from('this is not a tarball'), 'x:1');
  assert.equal(r.status, 400);
  // A tar without index.json or manifest.json.
  r = await load(tarBuffer([{ path: 'hello.txt', type: 'file', data: Buffer.from('hi') }]), 'x:1');
  assert.equal(r.status, 400);
  assert.match(r.body.message, /index\.json or manifest\.json/);
  // A member escaping the archive.
  r = await load(tarBuffer([{ path: '../manifest.json', type: 'file', data: Buffer.from('[]') }]), 'x:1');
  assert.equal(r.status, 400);
  // A symlink pointing at a host file, named as a layer.
  const manifest = JSON.stringify([{ Config: 'config.json', RepoTags: ['evil:1'], Layers: ['layer.tar'] }]);
  r = await load(tarBuffer([
    { path: 'manifest.json', type: 'file', data: Buffer.from(manifest) },
    { path: 'config.json', type: 'symlink', linkname: '/etc/passwd' },
    { path: 'layer.tar', type: 'symlink', linkname: '../../etc/shadow' },
  ]));
  assert.equal(r.status, 400);
  assert.match(r.body.message, /outside the archive|missing/);
  // A layout whose blob does not match its digest.
  const layout = join(work, 'tampered');
  await writeOciLayout(layout, { name: 'docker.io/library/tampered:1', layers: [busyboxRoot()], config: {} });
  const blobs = join(layout, 'blobs', 'sha256');
  const biggest = readdirSync(blobs).map((f) => join(blobs, f)).sort((a, b) => readFileSync(b).length - readFileSync(a).length)[0];
  const buf = readFileSync(biggest);
  buf[buf.length >> 1] ^= 0xff;
  writeFileSync(biggest, buf);
  const tarFile = join(work, 'tampered.tar');
  execFileSync('tar', ['-C', layout, '-cf', tarFile, '.']);
  r = await load(readFileSync(tarFile), 'tampered:1');
  assert.equal(r.status, 400);
  assert.match(r.body.message, /does not match its digest/);
  // Nothing half-made.
  assert.deepEqual(readdirSync(join(d.dataDir, 'images')).sort(), before);
  assert.deepEqual(readdirSync(join(d.dataDir, 'images', 'tmp')), []);
  assert.deepEqual(readdirSync(join(d.dataDir, 'tmp')), []);
  const names = (await (await d.fetch('/images', { token })).json()).map((i) => i.name);
  assert.ok(!names.some((n) => /tampered|evil|x:1/.test(n)), names.join(','));
});

test('a wrong content type is 415; an oversized upload is 413', async () => {
  let r = await d.fetch('/images/load', { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(r.status, 415);
  const d2 = await startDaemon({ env: { MAX_UPLOAD_BYTES: '1MB' } });
  try {
    // As curl sends a large upload: headers with Expect: 100-continue, the body
    // only after a 100. The daemon refuses from Content-Length alone. (Pushing
    // the body unasked races the daemon's close: the 413 can be lost to a reset.)
    const { default: net } = await import('node:net');
    const answer = await new Promise((res) => {
      const c = net.connect(d2.port, '127.0.0.1', () => c.write(
        `POST /images/load HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${d2.token()}\r\n` +
        `Content-Type: application/x-tar\r\nContent-Length: ${2 << 20}\r\nExpect: 100-continue\r\n\r\n`));
      let got = '';
      c.on('data', (b) => { got += b; if (got.includes('\r\n\r\n')) c.destroy(); });
      c.on('error', () => {});
      c.on('close', () => res(got));
    });
    assert.match(answer, /^HTTP\/1\.1 413 /);
  } finally { await d2.stop(); }
});
