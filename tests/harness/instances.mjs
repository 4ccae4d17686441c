// Helpers for tests that boot instances: create, wait for a state, read
// the SSE log stream, and find an instance's VMM process on this host.
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export async function createInstance(d, token, body) {
  const r = await d.fetch('/instances', {
    method: 'POST', token,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

export async function getInstance(d, token, id) {
  const r = await d.fetch(`/instances/${encodeURIComponent(id)}`, { token });
  return { status: r.status, body: r.status === 200 || r.status >= 400 ? await r.json() : null };
}

// Poll until the instance is in one of `states` (default: Stopped). Every
// boot here is under TCG, so the limit is generous; a hang fails the test.
export async function waitState(d, token, id, states = ['Stopped'], { timeoutMs = 90000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  const seen = [];
  for (;;) {
    const { status, body } = await getInstance(d, token, id);
    if (status !== 200) throw new Error(`GET instance ${id}: ${status} ${JSON.stringify(body)}`);
    if (seen.at(-1) !== body.state) seen.push(body.state);
    if (states.includes(body.state)) return { inst: body, seen };
    if (Date.now() > deadline) {
      const log = await readLogs(d, token, id, { source: 'app' }).catch(() => []);
      throw new Error(`instance ${id} still ${body.state} after ${timeoutMs} ms (seen ${seen.join(' -> ')}); console:\n${log.join('\n')}`);
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

// Read GET /instances/{id}/logs as SSE and return the decoded lines.
export async function readLogs(d, token, id, { tail, follow = false, source } = {}) {
  const q = new URLSearchParams();
  if (tail !== undefined) q.set('tail', String(tail));
  if (follow) q.set('follow', 'true');
  if (source) q.set('source', source);
  const r = await d.fetch(`/instances/${encodeURIComponent(id)}/logs?${q}`, { token });
  if (r.status !== 200) throw new Error(`logs: ${r.status} ${await r.text()}`);
  return parseSse(await r.text());
}

export function parseSse(text) {
  const lines = [];
  for (const ev of text.split('\n\n')) {
    for (const l of ev.split('\n')) if (l.startsWith('data: ')) lines.push(JSON.parse(l.slice(6)));
  }
  return lines;
}

// The VMM pid the daemon recorded for an instance (run/vmm.pid).
export function vmmPid(d, id) {
  const f = join(d.dataDir, 'instances', id, 'run', 'vmm.pid');
  return existsSync(f) ? Number(readFileSync(f, 'utf8').trim()) : null;
}

// A zombie counts as gone: a VM that outlived its daemon is reparented to
// whatever PID 1 is here, which may never reap it.
export function processAlive(pid) {
  try { process.kill(pid, 0); } catch (e) { return e.code !== 'ESRCH'; }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch { return false; }
}

// Live (non-zombie) processes whose command line contains `needle`.
export function processesWith(needle) {
  const found = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    let cmd;
    try { cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').replaceAll('\0', ' '); } catch { continue; }
    if (cmd.includes(needle) && processAlive(Number(e))) found.push(Number(e));
  }
  return found;
}
