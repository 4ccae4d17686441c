// A real OCI registry for tests: Debian's docker-registry (distribution 2.8)
// started on loopback with its storage in a temp dir, plus helpers that
// build images from tar entries (tar.mjs) and push them over the
// distribution API, and the standard fixtures the image tests pull.
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tarBuffer, gzip } from './tar.mjs';
import { bcryptHash } from './bcrypt.mjs';

export const sha256 = (buf) => 'sha256:' + createHash('sha256').update(buf).digest('hex');

// Safety net: if the test process exits without stop() (a crash, a thrown
// before()), kill what we started by PID and remove the temp dirs.
const live = new Map(); // child -> dir
process.on('exit', () => {
  for (const [child, dir] of live) {
    try { if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
    try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

// A port that was free a moment ago (bind 0, read it, close).
export function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

// opts.htpasswd: { user: password, ... } turns on HTTP Basic auth (the
// registry answers 401 + `WWW-Authenticate: Basic realm="test-registry"`).
// reg.auth is then the first user's { username, password }, and the push
// helpers send it.
export async function startRegistry({ htpasswd } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'hypeman-registry-'));
  let child;
  try {
    const port = await freePort();
    const cfg = [
      'version: 0.1',
      'log:', '  level: warn', '  accesslog:', '    disabled: true',
      'storage:', '  filesystem:', `    rootdirectory: ${dir}/data`, '  delete:', '    enabled: true',
      '  maintenance:', '    uploadpurging:', '      enabled: false',
      'http:', `  addr: 127.0.0.1:${port}`,
    ];
    let auth = null;
    if (htpasswd) {
      const users = Object.entries(htpasswd);
      writeFileSync(join(dir, 'htpasswd'), users.map(([u, p]) => `${u}:${bcryptHash(p, { cost: 4 })}\n`).join(''));
      cfg.push('auth:', '  htpasswd:', '    realm: test-registry', `    path: ${dir}/htpasswd`);
      auth = { username: users[0][0], password: users[0][1] };
    }
    writeFileSync(join(dir, 'config.yml'), cfg.join('\n') + '\n');
    child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    live.set(child, dir);
    let log = '';
    child.stderr.on('data', (d) => { log += d; });
    const exited = new Promise((r) => child.on('exit', r));
    const url = `http://127.0.0.1:${port}`;
    const want = htpasswd ? 401 : 200;
    for (let i = 0; ; i++) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`docker-registry exited: ${log}`);
      try { if ((await fetch(`${url}/v2/`)).status === want) break; } catch { /* not up yet */ }
      if (i > 300) throw new Error(`docker-registry did not start in 15s: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return {
      url, host: `127.0.0.1:${port}`, dir, pid: child.pid, auth,
      get log() { return log; },
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          process.kill(child.pid, 'SIGTERM');
          const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
          await exited;
          clearTimeout(t);
        }
        live.delete(child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.on('exit', r));
      process.kill(child.pid, 'SIGKILL');
      await gone;
    }
    if (child) live.delete(child);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

// fetch() against the registry, with its Basic credentials if it has any.
export function regFetch(reg, path, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (reg.auth) headers.authorization = 'Basic ' + Buffer.from(`${reg.auth.username}:${reg.auth.password}`).toString('base64');
  const url = path instanceof URL ? path : new URL(path, reg.url);
  return fetch(url, { ...init, headers });
}

// Upload one blob into repo (monolithic: POST then PUT ?digest=); skips it if
// present. Returns its digest. pushBlob(reg, buf) uses repo 'test/blobs'.
export async function pushBlob(reg, repo, buf) {
  if (buf === undefined) { buf = repo; repo = 'test/blobs'; }
  buf = Buffer.from(buf);
  const digest = sha256(buf);
  const head = await regFetch(reg, `/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
  if (head.status === 200) return digest;
  const start = await regFetch(reg, `/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`start upload: ${start.status} ${await start.text()}`);
  const loc = new URL(start.headers.get('location'), reg.url);
  loc.searchParams.set('digest', digest);
  const put = await regFetch(reg, loc, { method: 'PUT', body: buf, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`upload blob: ${put.status} ${await put.text()}`);
  return digest;
}

// PUT a manifest (an object, or a Buffer to send byte for byte). Returns its digest.
export async function pushManifest(reg, repo, ref, manifest, mediaType) {
  const body = Buffer.isBuffer(manifest) ? manifest : Buffer.from(JSON.stringify(manifest));
  const r = await regFetch(reg, `/v2/${repo}/manifests/${ref}`, { method: 'PUT', body, headers: { 'content-type': mediaType } });
  if (r.status !== 201) throw new Error(`push manifest ${repo}:${ref}: ${r.status} ${await r.text()}`);
  const digest = sha256(body);
  const got = r.headers.get('docker-content-digest');
  if (got && got !== digest) throw new Error(`registry says ${got} for manifest ${digest}`);
  return digest;
}

export const MT = {
  oci: {
    manifest: 'application/vnd.oci.image.manifest.v1+json',
    index: 'application/vnd.oci.image.index.v1+json',
    config: 'application/vnd.oci.image.config.v1+json',
    layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
    layer: 'application/vnd.oci.image.layer.v1.tar',
  },
  docker: {
    manifest: 'application/vnd.docker.distribution.manifest.v2+json',
    index: 'application/vnd.docker.distribution.manifest.list.v2+json',
    config: 'application/vnd.docker.container.image.v1+json',
    layerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
    layer: 'application/vnd.docker.image.rootfs.diff.tar',
  },
};

// Accept header that asks for any manifest kind.
export const ACCEPT_ALL = [MT.oci.manifest, MT.oci.index, MT.docker.manifest, MT.docker.index].join(', ');

// Build an image in memory. layers: arrays of tar entries (or ready tar
// Buffers). Returns { blobs: Map(digest -> Buffer) (config + layers),
// manifest, manifestBuf, digest, mediaType, size, config, configBuf,
// configDigest, layerDigests, diffIds, tars, platform, descriptor }.
export function buildImage({ layers, config = {}, platform = { os: 'linux', architecture: 'amd64' }, gzip: gz = true, mediaType = 'oci', annotations, created = '2026-01-01T00:00:00Z' }) {
  const mt = MT[mediaType];
  if (!mt) throw new Error(`mediaType must be oci or docker, not ${mediaType}`);
  const blobs = new Map();
  const tars = layers.map((entries) => (Buffer.isBuffer(entries) ? entries : tarBuffer(entries)));
  const layerDescs = tars.map((tar) => {
    const blob = gz ? gzip(tar) : tar;
    const digest = sha256(blob);
    blobs.set(digest, blob);
    return { mediaType: gz ? mt.layerGzip : mt.layer, digest, size: blob.length };
  });
  const diffIds = tars.map(sha256);
  const cfg = {
    created, architecture: platform.architecture, os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: config.Env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Entrypoint: config.Entrypoint ?? null, Cmd: config.Cmd ?? null,
      WorkingDir: config.WorkingDir ?? '', User: config.User ?? '',
      ...(config.Labels ? { Labels: config.Labels } : {}),
      ...(config.ExposedPorts ? { ExposedPorts: config.ExposedPorts } : {}),
      ...(config.StopSignal ? { StopSignal: config.StopSignal } : {}),
    },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: tars.map((_, i) => ({ created, created_by: `hypeman tests: layer ${i}` })),
  };
  const configBuf = Buffer.from(JSON.stringify(cfg));
  const configDigest = sha256(configBuf);
  blobs.set(configDigest, configBuf);
  const manifest = {
    schemaVersion: 2, mediaType: mt.manifest,
    config: { mediaType: mt.config, digest: configDigest, size: configBuf.length },
    layers: layerDescs,
    ...(annotations && mediaType === 'oci' ? { annotations } : {}),
  };
  const manifestBuf = Buffer.from(JSON.stringify(manifest));
  const digest = sha256(manifestBuf);
  return {
    blobs, manifest, manifestBuf, digest, mediaType: mt.manifest, size: manifestBuf.length,
    config: cfg, configBuf, configDigest, layerDigests: layerDescs.map((l) => l.digest), diffIds, tars, platform,
    descriptor: { mediaType: mt.manifest, digest, size: manifestBuf.length, platform: { ...platform } },
  };
}

// Build and push an image; returns buildImage()'s object (digest is the manifest digest).
export async function pushImage(reg, repo, tag, opts) {
  const img = buildImage(opts);
  for (const buf of img.blobs.values()) await pushBlob(reg, repo, buf);
  const digest = await pushManifest(reg, repo, tag, img.manifestBuf, img.mediaType);
  if (digest !== img.digest) throw new Error('manifest digest changed on push');
  return img;
}

// entries: [{digest, size, mediaType, platform}] (an image's .descriptor
// fits). Returns { digest, index, indexBuf, mediaType }.
export async function pushIndex(reg, repo, tag, entries, mediaType = 'oci') {
  const mt = MT[mediaType].index;
  const index = { schemaVersion: 2, mediaType: mt, manifests: entries.map((e) => ({ mediaType: e.mediaType, digest: e.digest, size: e.size, platform: e.platform })) };
  const indexBuf = Buffer.from(JSON.stringify(index));
  const digest = await pushManifest(reg, repo, tag, indexBuf, mt);
  return { digest, index, indexBuf, mediaType: mt, size: indexBuf.length };
}

export const BUSYBOX_APPLETS = ['sh', 'echo', 'cat', 'ls', 'sleep', 'env', 'pwd', 'id', 'true', 'false', 'kill', 'mount', 'ps',
  'hostname', 'uname', 'printenv', 'stat', 'mkdir', 'rm', 'touch', 'wc', 'head', 'grep', 'test', 'whoami', 'sync', 'dd', 'sha256sum',
  'httpd', 'wget', 'nc', 'ip'];

// A minimal root: busybox (static, from Debian's busybox-static) and its applets.
export function busyboxRoot() {
  const entries = [
    { path: 'bin', type: 'dir' }, { path: 'etc', type: 'dir' }, { path: 'tmp', type: 'dir', mode: 0o1777 },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: readFileSync('/bin/busybox') },
  ];
  for (const a of BUSYBOX_APPLETS) entries.push({ path: `bin/${a}`, type: 'symlink', linkname: 'busybox' });
  entries.push({ path: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n' });
  entries.push({ path: 'etc/group', data: 'root:x:0:\nnogroup:x:65534:\napp:x:1000:\n' });
  return entries;
}

// n deterministic, incompressible bytes (AES-128-CTR keystream keyed by seed).
export function noise(n, seed = 'hypeman') {
  const key = createHash('sha256').update(String(seed)).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

const FIXTURE_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'FOO=bar'];

// The standard images. Returns { 'test/<name>': image (see buildImage) + extras }.
export async function pushFixtures(reg) {
  const fx = {};
  fx['test/busybox'] = await pushImage(reg, 'test/busybox', 'latest', {
    layers: [busyboxRoot()],
    config: { Entrypoint: null, Cmd: ['/bin/sh'], Env: FIXTURE_ENV, WorkingDir: '/srv' },
  });

  const base = [
    { path: 'a', type: 'dir' }, { path: 'a/file1', data: 'one' }, { path: 'a/file2', data: 'two' },
    { path: 'b', type: 'dir' }, { path: 'b/dir', type: 'dir' }, { path: 'b/dir/x', data: 'x' },
    { path: 'c', type: 'dir' }, { path: 'c/keep', data: 'lower' }, { path: 'c/sub', type: 'dir' }, { path: 'c/sub/deep', data: 'lower' },
    { path: 'owned', data: 'secret', uid: 1000, gid: 1000, mode: 0o640 },
    { path: 'setuid', data: '#!/bin/sh\n', mode: 0o4755 },
  ];
  const upper = [
    { path: 'a/.wh.file1', data: '' },
    { path: 'b/.wh.dir', data: '' },
    { path: 'c/.wh..wh..opq', data: '' },
    { path: 'c/new', data: 'upper' },
    { path: 'hard1', data: 'linked' }, { path: 'hard2', type: 'hardlink', linkname: 'hard1' },
    { path: 'link', type: 'symlink', linkname: 'a/file2' },
    { path: 'abs-link', type: 'symlink', linkname: '/a/file2' },
    { path: 'xattr', data: 'x', xattrs: { 'user.test': '1' } },
    { path: 'd', type: 'dir', mode: 0o700, uid: 1000, gid: 1000 },
    { path: 'long/' + 'n'.repeat(150) + '/' + 'f'.repeat(120), data: 'long' },
  ];
  const top = [{ path: 'a/file1', data: 'back again' }, { path: 'fifo', type: 'fifo' }];
  fx['test/layers'] = await pushImage(reg, 'test/layers', 'latest', { layers: [base, upper, top], config: { Cmd: ['/bin/true'] }, mediaType: 'docker' });
  fx['test/layers'].expect = {
    // path -> present after applying the layers in order
    paths: {
      'a/file1': true, 'a/file2': true, 'b/dir': false, 'b/dir/x': false, b: true, 'c/keep': false, 'c/sub': false, 'c/new': true,
      hard1: true, hard2: true, link: true, 'abs-link': true, fifo: true, xattr: true, d: true,
      'a/.wh.file1': false, 'b/.wh.dir': false, 'c/.wh..wh..opq': false,
    },
    contents: { 'a/file1': 'back again', 'a/file2': 'two', 'c/new': 'upper', hard1: 'linked', hard2: 'linked', owned: 'secret', xattr: 'x', ['long/' + 'n'.repeat(150) + '/' + 'f'.repeat(120)]: 'long' },
    owners: { owned: { uid: 1000, gid: 1000, mode: 0o640 }, setuid: { uid: 0, gid: 0, mode: 0o4755 }, d: { uid: 1000, gid: 1000, mode: 0o700 } },
    symlinks: { link: 'a/file2', 'abs-link': '/a/file2' },
    hardlinks: [['hard1', 'hard2']],
    xattrs: { xattr: { 'user.test': '1' } },
    fifos: ['fifo'],
  };

  const amd = await pushImage(reg, 'test/multi', 'amd64', { layers: [[{ path: 'platform', data: 'linux/amd64\n' }]], platform: { os: 'linux', architecture: 'amd64' } });
  const arm = await pushImage(reg, 'test/multi', 'arm64', { layers: [[{ path: 'platform', data: 'linux/arm64/v8\n' }]], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  const idx = await pushIndex(reg, 'test/multi', 'latest', [arm.descriptor, amd.descriptor]);
  fx['test/multi'] = { ...idx, amd64: amd, arm64: arm, expect: { 'linux/amd64': 'linux/amd64\n', 'linux/arm64': 'linux/arm64/v8\n' } };

  const big = noise(64 << 20, 'large');
  fx['test/large'] = await pushImage(reg, 'test/large', 'latest', { layers: [[{ path: 'big', data: big }]], config: { Cmd: ['/bin/sh'] } });
  fx['test/large'].expect = { bigSha256: sha256(big), bigSize: big.length };
  fx['test/escape'] = await pushImage(reg, 'test/escape', 'latest', { layers: [[{ path: 'ok', data: 'fine' }, { path: '../escape-marker', data: 'gotcha' }]] });
  fx['test/uncompressed'] = await pushImage(reg, 'test/uncompressed', 'latest', { layers: [busyboxRoot()], gzip: false, config: { Cmd: ['/bin/sh'], Env: FIXTURE_ENV } });
  return fx;
}
