// bench/wake: what a sleeping instance costs its first client. A busybox
// httpd guest (256MB, 1 vCPU) behind an ingress with auto_standby (idle
// 1s), all in a network namespace this script makes and deletes:
//
//   sleeping: a client in the namespace connects to the ingress while the
//             instance is in standby -> first byte of the response (the
//             ingress restores it, then forwards)
//   running:  the same request to the instance awake
//   restore:  POST /instances/{id}/restore round trip of the same instance
//             from a plain standby (the engine's restore, no traffic)
//
// The wake cost is sleeping - running. Target: wake cost <= restore + 30 ms
// (medians). Also the host memory (RSS of the VMM processes) of the
// instance asleep against awake. Prints each run, medians and p95, PASS/MISS
// and one JSON line. Exits non-zero only on errors.
// Usage: node bench/wake.mjs [runs]   (or BENCH_RUNS=N; default 20)
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const RUNS = Number(process.argv[2] || process.env.BENCH_RUNS || 20);
process.env.HYPEMAN_BIN_DIR ||= join(process.cwd(), 'build/rel/bin');
const { startDaemon } = await import('../tests/harness/daemon.mjs');
const { pulledDataDir } = await import('../tests/harness/images.mjs');
const { createInstance, waitState, vmmPid } = await import('../tests/harness/instances.mjs');
const { startRegistry, pushFixtures } = await import('../tests/registry/registry.mjs');

const TARGET_SLACK_MS = 30;
const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => sorted(xs)[Math.floor(xs.length / 2)];
const p95 = (xs) => sorted(xs)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const msSince = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

const NS = `hmw-${randomBytes(3).toString('hex')}`;
const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });

// One client process in the namespace, driven by stdin: each line is a
// request; it answers with the ms from connect to the response's first byte.
function startClient(port, host) {
  const code = `const net = require('net'); const rl = require('readline').createInterface({ input: process.stdin });
    rl.on('line', () => { const t0 = process.hrtime.bigint(); let first = 0, got = '';
      const s = net.connect(${port}, '127.0.0.1', () => s.write('GET / HTTP/1.1\\r\\nHost: ${host}\\r\\nConnection: close\\r\\n\\r\\n'));
      s.on('data', (b) => { if (!first) first = Number(process.hrtime.bigint() - t0) / 1e6; got += b; });
      s.on('close', () => console.log(JSON.stringify({ ms: first, ok: /^HTTP\\/1\\.[01] 200/.test(got) && got.endsWith('awake\\n') })));
      s.on('error', (e) => console.log(JSON.stringify({ error: e.code }))); });`;
  const p = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting = [];
  let buf = '';
  p.stdout.on('data', (b) => {
    buf += b;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      waiting.shift()?.(JSON.parse(line));
    }
  });
  return {
    ask: () => new Promise((res) => { waiting.push(res); p.stdin.write('go\n'); }),
    stop: () => p.kill('SIGKILL'),
  };
}

const rssKiB = (pid) => {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
};

let reg, d, client;
const results = { sleeping: [], running: [], restore: [], after_restore: [] };
try {
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  reg = await startRegistry();
  await pushFixtures(reg);
  const image = `${reg.host}/test/busybox:latest`;
  const dataDir = await pulledDataDir([image]);
  d = await startDaemon({ netns: NS, env: { SUBNET_CIDR: '10.124.0.0/16', BRIDGE_NAME: 'hmbrw', DATA_DIR: dataDir } });
  const token = d.token();
  const json = { 'content-type': 'application/json' };
  const c = await createInstance(d, token, {
    name: 'wake', image, size: '256MB', vcpus: 1, auto_standby: { enabled: true, idle_timeout: '1s' },
    cmd: ['sh', '-c', 'mkdir -p /www && echo awake > /www/index.html && exec httpd -f -p 8080 -h /www'],
  });
  if (c.status !== 201) throw new Error(`create: ${JSON.stringify(c.body)}`);
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  const ing = await d.fetch('/ingresses', { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'wake', rules: [{ match: { hostname: 'wake.test', port: 8094 }, target: { instance: 'wake', port: 8080 } }] }) });
  if (ing.status !== 201) throw new Error(`ingress: ${await ing.text()}`);
  client = startClient(8094, 'wake.test');
  await client.ask(); // warm the path once

  let rssAwake = 0, vmmAsleep = 0;
  for (let i = 0; i < RUNS; i++) {
    await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
    const asleep = vmmPid(d, id);
    if (asleep && existsSync(`/proc/${asleep}`)) vmmAsleep = Math.max(vmmAsleep, rssKiB(asleep));
    const s = await client.ask();
    if (!s.ok) throw new Error(`a request to the sleeping instance failed: ${JSON.stringify(s)}`);
    const r = await client.ask();
    if (!r.ok) throw new Error(`a request to the running instance failed: ${JSON.stringify(r)}`);
    results.sleeping.push(s.ms);
    results.running.push(r.ms);
    const pid = vmmPid(d, id);
    if (pid && existsSync(`/proc/${pid}`)) rssAwake = Math.max(rssAwake, rssKiB(pid));
    console.log(`run ${i + 1}: sleeping ${s.ms.toFixed(1)} ms, running ${r.ms.toFixed(1)} ms`);
  }
  // The engine's plain restore of the same instance, no traffic (a hold keeps the controller off while it runs).
  await d.fetch(`/instances/${id}`, { method: 'PATCH', token, headers: json, body: JSON.stringify({ auto_standby: { enabled: false } }) });
  for (let i = 0; i < Math.min(RUNS, 9); i++) {
    let r = await d.fetch(`/instances/${id}/standby`, { method: 'POST', token, headers: json, body: '{}' });
    if (r.status !== 200) throw new Error(`standby: ${await r.text()}`);
    const t = process.hrtime.bigint();
    r = await d.fetch(`/instances/${id}/restore`, { method: 'POST', token });
    if (r.status !== 200) throw new Error(`restore: ${await r.text()}`);
    results.restore.push(msSince(t));
    // The first request to a VM just restored with no wake in the way: what
    // the guest itself takes to answer first after a restore.
    const a = await client.ask();
    if (!a.ok) throw new Error(`a request after a restore failed: ${JSON.stringify(a)}`);
    results.after_restore.push(a.ms);
    await sleep(300);
  }
  const { readLogs } = await import('../tests/harness/instances.mjs');
  const op = (await readLogs(d, token, id, { source: 'hypeman' })).map((l) => (typeof l === 'string' ? l : JSON.stringify(l)));
  const wakeMs = op.map((l) => /wake asked by a connection\\?" ok=yes ms=([\d.]+)/.exec(l)).filter(Boolean).map((m) => Number(m[1]));
  const restoredMs = op.map((l) => /msg=restored running_ms=([\d.]+)/.exec(l)).filter(Boolean).map((m) => Number(m[1]));
  if (wakeMs.length) console.log(`in the daemon: the wake's restore call median ${median(wakeMs).toFixed(1)} ms; restored running_ms median ${median(restoredMs).toFixed(1)} ms`);
  const cost = median(results.sleeping) - median(results.running);
  const restore = median(results.restore);
  console.log('\n               median     p95');
  for (const k of ['sleeping', 'running', 'restore', 'after_restore'])
    console.log(`${k.padEnd(12)} ${median(results[k]).toFixed(1).padStart(8)} ${p95(results[k]).toFixed(1).padStart(8)} ms`);
  console.log(`wake cost (sleeping - running) ${cost.toFixed(1)} ms; restore ${restore.toFixed(1)} ms`);
  console.log(`${cost <= restore + TARGET_SLACK_MS ? 'PASS' : 'MISS'} wake cost <= restore + ${TARGET_SLACK_MS} ms`);
  // Where the rest goes: the guest's first answer after any restore (a new
  // VMM process: under TCG its translated code starts empty) against a
  // running one's, and what is left for the wake path itself.
  const firstAfter = median(results.after_restore) - median(results.running);
  console.log(`first request after a plain restore: ${median(results.after_restore).toFixed(1)} ms (${firstAfter.toFixed(1)} ms over a running VM's); the wake path's own share: ${(cost - restore - firstAfter).toFixed(1)} ms`);
  console.log(`host RSS of its VMM: awake ${(rssAwake / 1024).toFixed(1)} MiB, asleep ${(vmmAsleep / 1024).toFixed(1)} MiB (0: no VMM process)`);
  console.log(JSON.stringify({ bench: 'wake', runs: RUNS, sleeping_ms: median(results.sleeping), sleeping_p95_ms: p95(results.sleeping), running_ms: median(results.running), restore_ms: restore, after_restore_ms: median(results.after_restore), wake_cost_ms: cost, rss_awake_kib: rssAwake, rss_asleep_kib: vmmAsleep }));
} finally {
  client?.stop();
  await d?.stop();
  await reg?.stop();
  try { ip('netns', 'del', NS); } catch { /* gone */ }
}
