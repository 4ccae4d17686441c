// Helpers for tests that pull images: wait for an image to settle, and
// look inside a converted root disk with fsck.erofs --extract.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from './daemon.mjs';

export const enc = (name) => encodeURIComponent(name);

// Poll GET /images/{name} until status is ready or failed (or timeout).
export async function waitImage(d, token, name, { timeoutMs = 120000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  const seen = new Set();
  for (;;) {
    const r = await d.fetch(`/images/${enc(name)}`, { token });
    if (r.status !== 200) throw new Error(`GET image ${name}: ${r.status} ${await r.text()}`);
    const img = await r.json();
    seen.add(img.status);
    if (img.status === 'ready' || img.status === 'failed') return { img, seen };
    if (Date.now() > deadline) throw new Error(`image ${name} still ${img.status} after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

export async function pull(d, token, body) {
  const r = await d.fetch('/images', {
    method: 'POST', token,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const j = await r.json();
  return { status: r.status, body: j };
}

// A data dir with these images pulled and ready, made by a network-less
// daemon that is stopped again (tests that run the daemon in a network
// namespace then start theirs on it: the registry is on the host's loopback).
export async function pulledDataDir(names) {
  const d0 = await startDaemon();
  const t0 = d0.token();
  for (const name of names) {
    await pull(d0, t0, { name });
    const { img } = await waitImage(d0, t0, name);
    if (img.status !== 'ready') throw new Error(`image ${name}: ${img.status} (${img.error})`);
  }
  await d0.stop({ keepData: true });
  return d0.dataDir;
}

// The converted disk of a ready image in the daemon's data dir.
export function diskPath(d, digest) {
  const dir = join(d.dataDir, 'images', digest.replace('sha256:', ''));
  for (const f of ['rootfs.erofs', 'rootfs.ext4']) if (existsSync(join(dir, f))) return join(dir, f);
  return null;
}

// Extract an erofs disk into a temp dir (owners and modes kept); returns the dir.
export function extractErofs(disk) {
  const out = mkdtempSync(join(tmpdir(), 'hypeman-erofs-'));
  rmSync(out, { recursive: true });
  execFileSync('fsck.erofs', [`--extract=${out}`, '--preserve', disk], { stdio: 'pipe' });
  return out;
}

// The full st_mode of `path` inside an erofs disk, read from the on-disk inode.
// fsck.erofs --extract and dump.erofs (1.5) both drop setuid/setgid/sticky bits,
// so mode checks read the inode itself: dump.erofs names its NID, and the
// inode sits at meta_blkaddr * block size + nid * 32 with i_mode at offset 4
// (the same place in compact and extended inodes).
// The inode number (NID) of `path` inside an erofs disk. fsck.erofs --extract
// also writes hard links as separate files, so link tests compare NIDs.
export function erofsNid(disk, path) {
  const out = execFileSync('dump.erofs', [`--path=${path}`, disk], { encoding: 'utf8' });
  const m = out.match(/NID:\s*(\d+)/);
  if (!m) throw new Error(`dump.erofs found no NID for ${path}:\n${out}`);
  return Number(m[1]);
}

export function erofsMode(disk, path) {
  const nid = erofsNid(disk, path);
  const img = readFileSync(disk);
  const sb = 1024;
  const blkszbits = img.readUInt8(sb + 0x0c);
  const metaBlkaddr = img.readUInt32LE(sb + 0x28);
  return img.readUInt16LE(metaBlkaddr * 2 ** blkszbits + nid * 32 + 4);
}
