// The soak: lifecycle cycles against one daemon, and what the daemon and the
// host hold before and after them. Shared by tests/integration/soak.test.mjs
// (a short run that must end flat) and bench/soak.mjs (the long run).
//
//   run cycle:     create (a program that prints a line and exits) -> its
//                  line in the log and the instance Stopped -> delete
//   standby cycle: standby -> restore (the counter goes on) -> fork of the
//                  running instance (its own address) -> delete the fork
//
// resources() counts the daemon's RSS, open fds and threads, the files under
// its data dir, the TAPs and nftables rules in its namespace, and the tmpfs
// RAM files of its VMs.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitState, readLogs } from './instances.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function countFiles(dir, skip = () => false) {
  let n = 0;
  let entries;
  try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return 0; }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (skip(p)) continue;
    if (e.isDirectory()) n += countFiles(p, skip);
    else n++;
  }
  return n;
}

// What the daemon d (in namespace ns, or none) and the host hold for it now.
export function resources(d, ns) {
  const pid = d.child.pid;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const inNs = (...a) => execFileSync('ip', ns ? ['netns', 'exec', ns, ...a] : a, { encoding: 'utf8' });
  let taps = 0, rules = 0;
  if (ns) {
    taps = inNs('ip', '-o', 'link', 'show').split('\n').filter((l) => / hm-[0-9a-z]+[@:]/.test(l)).length;
    rules = inNs('nft', 'list', 'ruleset').split('\n').filter((l) => /^\s+(ip|ether|meta|iifname|oifname|tcp|udp|ct|counter|jump|accept|drop|limit|dnat|snat|masquerade)\b/.test(l)).length;
  }
  let tmpfs = 0;
  for (const e of existsSync('/dev/shm') ? readdirSync('/dev/shm') : []) {
    if (!e.startsWith('hypeman-')) continue;
    try {
      if (readFileSync(join('/dev/shm', e, 'data_dir'), 'utf8') !== d.dataDir) continue;
    } catch { continue; }
    tmpfs += readdirSync(join('/dev/shm', e)).filter((f) => f.endsWith('.ram')).length;
  }
  return {
    rss_kb: kb('VmRSS'),
    fds: readdirSync(`/proc/${pid}/fd`).length,
    threads: readdirSync(`/proc/${pid}/task`).length,
    // Logs grow by design (and rotate at LOG_MAX_BYTES): files, not bytes, are counted.
    data_files: countFiles(d.dataDir, (p) => p.endsWith('nsproxy.sock')),
    taps,
    nft_rules: rules,
    tmpfs_ram_files: tmpfs,
  };
}

async function api(d, token, method, path, body, want) {
  const r = await d.fetch(path, {
    method, token,
    ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  if (want && r.status !== want) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function waitLine(d, token, id, pred, timeoutMs = 60000) {
  const t0 = Date.now();
  for (;;) {
    const lines = await readLogs(d, token, id, { tail: 200 });
    const hit = lines.find(pred);
    if (hit) return hit;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${id}: no matching line in ${timeoutMs} ms: ${lines.slice(-5)}`);
    await sleep(50);
  }
}

// One run cycle (n: its number): create, see its output and its end, delete.
export async function runCycle(d, token, image, n) {
  const word = `soak-run-${n}-done`;
  const inst = await api(d, token, 'POST', '/instances', { name: `soak-run-${n}`, image, size: '256MB', vcpus: 1, cmd: ['sh', '-c', `echo ${word}`] }, 201);
  try {
    await waitLine(d, token, inst.id, (l) => l.trim() === word);
    await waitState(d, token, inst.id, ['Stopped']);
  } finally {
    await api(d, token, 'DELETE', `/instances/${inst.id}`, undefined, 204);
  }
}

const COUNTER = ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.2; done'];
const lastCount = async (d, token, id) => {
  const c = (await readLogs(d, token, id, { tail: 50 })).map((l) => /^n=(\d+)$/.exec(l.trim())).filter(Boolean);
  return c.length ? Number(c.at(-1)[1]) : 0;
};

// The instance standby cycles work on (Running, counting).
export async function startCounter(d, token, image, name = 'soak-counter') {
  const inst = await api(d, token, 'POST', '/instances', { name, image, size: '256MB', vcpus: 1, cmd: COUNTER }, 201);
  await waitState(d, token, inst.id, ['Running']);
  await waitLine(d, token, inst.id, (l) => l.trim() === 'n=2');
  return inst;
}

// One standby cycle on the counter instance src (n: its number).
export async function standbyCycle(d, token, src, n) {
  const before = await lastCount(d, token, src.id);
  await api(d, token, 'POST', `/instances/${src.id}/standby`, {}, 200);
  const r = await api(d, token, 'POST', `/instances/${src.id}/restore`, {}, 200);
  if (r.state !== 'Running') throw new Error(`restored ${src.id} is ${r.state}`);
  await waitLine(d, token, src.id, (l) => { const m = /^n=(\d+)$/.exec(l.trim()); return m && Number(m[1]) > before; });
  const f = await api(d, token, 'POST', `/instances/${src.id}/fork`, { name: `soak-fork-${n}`, from_running: true }, 201);
  try {
    if (f.state !== 'Running') throw new Error(`fork ${f.id} is ${f.state}`);
    if (src.network && f.network?.ip === src.network.ip) throw new Error(`fork ${f.id} has its source's address`);
  } finally {
    await api(d, token, 'DELETE', `/instances/${f.id}`, undefined, 204);
  }
}

// What grew between two resources() readings (only the counts that must not).
export function growth(a, b) {
  const out = {};
  for (const k of ['fds', 'threads', 'data_files', 'taps', 'nft_rules', 'tmpfs_ram_files']) if (b[k] !== a[k]) out[k] = [a[k], b[k]];
  return out;
}

// resources() once deletes have finished in the background (DATA_DIR/instances/.deleted empty).
export async function settledResources(d, ns) {
  const deleted = join(d.dataDir, 'instances', '.deleted');
  for (let i = 0; i < 100 && existsSync(deleted) && readdirSync(deleted).length; i++) await sleep(50);
  return resources(d, ns);
}
