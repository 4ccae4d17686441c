// bench/egress: what the egress proxy costs a guest's HTTPS. One guest (the
// host's curl over busybox, 256MB, 1 vCPU) and one HTTPS server in an
// "outside" namespace (its own test CA), three ways to the same server:
//
//   direct:   straight to 192.0.2.2:8443 (network.egress with mode
//             http_https_only leaves port 8443 direct)
//   tunnel:   through the proxy, a CONNECT to a host with no credential
//             (bytes pass as they are; the guest checks the server itself)
//   brokered: through the proxy to a host with a credential: the proxy
//             terminates the guest's TLS with a leaf of its CA, verifies the
//             upstream, and sets the Authorization header on each request
//
// For 1 and 8 concurrent clients (curl processes in the guest), each path is
// measured with a new connection per request (`fresh`: the handshakes are
// the cost) and with one kept-alive connection per client (`keepalive`: the
// per-request cost). Reports per-request latency (curl's time_total; mean,
// p95), requests per second (all clients, by the guest's clock) and the
// ratios tunnel/direct and brokered/direct. Absolute times swing with the
// host (TCG guests, noisy neighbours): compare the ratios of one run.
// Prints a table and one JSON line. Exits non-zero only on errors.
// Latency is the mean: a guest's clock moves in coarse steps under load (with
// 8 clients on one vCPU, times come in scheduler ticks), so medians of fast
// requests can read 0.
// Usage: node bench/egress.mjs [requests per client]   (or BENCH_RUNS=N; default 50)
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const PER_CLIENT = Number(process.argv[2] || process.env.BENCH_RUNS || 50);
process.env.HYPEMAN_BIN_DIR ||= join(process.cwd(), 'build/rel/bin');
const { startDaemon, runCli } = await import('../tests/harness/daemon.mjs');
const { pulledDataDir } = await import('../tests/harness/images.mjs');
const { createInstance, waitState } = await import('../tests/harness/instances.mjs');
const { startRegistry, pushImage, busyboxRoot } = await import('../tests/registry/registry.mjs');
const { outsidePair, makeTestCa, removeTestNames, echoServers, curlLayer } = await import('../tests/harness/egress.mjs');

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const p95 = (xs) => sorted(xs)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];

const tag = randomBytes(3).toString('hex');
const NS = `hme-${tag}`, OUT = `hmf-${tag}`;
const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });
const TLSDIR = mkdtempSync(join(tmpdir(), 'hypeman-bench-egress-'));
const procs = [];

const PATHS = {
  direct: "--noproxy '*' --cacert /etc/bench-ca.pem --resolve api.test:8443:192.0.2.2 https://api.test:8443/",
  tunnel: '--cacert /etc/bench-ca.pem https://other.test:8443/',
  brokered: 'https://api.test:8443/',
};

let reg, d;
const rows = [];
try {
  for (const ns of [NS, OUT]) ip('netns', 'add', ns);
  outsidePair(NS, OUT);
  makeTestCa(TLSDIR, NS);
  await echoServers(OUT, TLSDIR, procs);

  reg = await startRegistry();
  const image = `${reg.host}/bench/curl:latest`;
  await pushImage(reg, 'bench/curl', 'latest', {
    layers: [busyboxRoot(), curlLayer(TLSDIR, [{ path: 'etc/bench-ca.pem', data: readFileSync(join(TLSDIR, 'ca.pem')) }])],
    config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/bin:/bin'] },
  });
  const dataDir = await pulledDataDir([image]);
  d = await startDaemon({ netns: NS, env: { SUBNET_CIDR: '10.125.0.0/16', BRIDGE_NAME: 'hmbre', DATA_DIR: dataDir, EGRESS_UPSTREAM_CA: join(TLSDIR, 'ca.pem'), LOG_LEVEL: 'info' } });
  const token = d.token();
  const c = await createInstance(d, token, {
    name: 'egress', image, size: '256MB', vcpus: 1,
    env: { REAL_KEY: `sk-${randomBytes(8).toString('hex')}` },
    network: { egress: { enabled: true, enforcement: { mode: 'http_https_only' } } },
    credentials: { API_KEY: { source: { env: 'REAL_KEY' }, inject: [{ hosts: ['api.test'], as: { header: 'Authorization', format: 'Bearer ${value}' } }] } },
    cmd: ['sh', '-c', 'exec sleep 36000'],
  });
  if (c.status !== 201) throw new Error(`create: ${JSON.stringify(c.body)}`);
  await waitState(d, token, c.body.id, ['Running']);
  const sh = async (cmd) => {
    const r = await runCli(['exec', 'egress', 'sh', '-c', cmd], { env: { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: token } });
    if (r.code !== 0) throw new Error(`exec: ${r.stderr}`);
    return r.stdout;
  };
  console.log(`guest clocksource: ${(await sh('cat /sys/devices/system/clocksource/clocksource0/current_clocksource /sys/devices/system/clocksource/clocksource0/available_clocksource')).trim().replace(/\n/g, ' / available: ')}`);
  // Each path answers, the brokered one with the header set.
  for (const [name, args] of Object.entries(PATHS)) {
    const body = JSON.parse(await sh(`curl -sS --max-time 20 ${args}`));
    if ((name === 'brokered') !== (body.authorization !== null)) throw new Error(`${name}: ${JSON.stringify(body)}`);
  }

  // clients curl processes at once, each making PER_CLIENT requests: fresh
  // (Connection: close, so each is a new connection and handshake) or over
  // one kept-alive connection. Per-request times from curl, the batch's wall
  // time from the guest's uptime clock.
  const batch = async (args, clients, fresh) => {
    const urls = Array(PER_CLIENT).fill(args.split(' ').pop()).join(' ');
    const opts = args.split(' ').slice(0, -1).join(' ');
    const hdr = fresh ? "-H 'Connection: close'" : '';
    const out = await sh(`a=$(cut -d' ' -f1 /proc/uptime); j=0; while [ $j -lt ${clients} ]; do ` +
      `curl -s ${hdr} ${opts} -w '%{stderr}%{http_code} %{time_total}\\n' ${urls} >/dev/null 2>/tmp/c$j & j=$((j+1)); done; wait; ` +
      `b=$(cut -d' ' -f1 /proc/uptime); echo "wall $a $b"; cat /tmp/c*; rm -f /tmp/c*`);
    const wall = out.match(/^wall (\S+) (\S+)$/m);
    const times = [...out.matchAll(/^(\d{3}) ([\d.]+)$/gm)];
    if (times.length !== clients * PER_CLIENT || times.some((m) => m[1] !== '200')) throw new Error(`a request failed:\n${out}`);
    const ms = times.map((m) => Number(m[2]) * 1000);
    const wallS = Number(wall[2]) - Number(wall[1]);
    return { mean: mean(ms), p95: p95(ms), rps: (clients * PER_CLIENT) / Math.max(wallS, 0.01) };
  };
  for (const fresh of [true, false]) {
    for (const clients of [1, 8]) {
      await batch(PATHS.direct, 1, fresh); // warm the guest's page cache and the proxy's leaf cache
      const row = { mode: fresh ? 'fresh' : 'keepalive', clients };
      for (const [name, args] of Object.entries(PATHS)) row[name] = await batch(args, clients, fresh);
      rows.push(row);
      const f = (r) => `${r.mean.toFixed(1).padStart(7)} ${r.p95.toFixed(1).padStart(7)} ${r.rps.toFixed(1).padStart(7)}`;
      console.log(`${row.mode.padEnd(9)} x${String(clients).padEnd(2)}  direct ${f(row.direct)} | tunnel ${f(row.tunnel)} | brokered ${f(row.brokered)}`);
    }
  }
  console.log('\n(each: mean ms, p95 ms, requests/s)');
  console.log('ratios against direct (latency: lower is better; rps: higher is better)');
  const summary = rows.map((r) => ({
    mode: r.mode, clients: r.clients,
    direct: r.direct, tunnel: r.tunnel, brokered: r.brokered,
    latency_ratio: { tunnel: r.tunnel.mean / r.direct.mean, brokered: r.brokered.mean / r.direct.mean },
    rps_ratio: { tunnel: r.tunnel.rps / r.direct.rps, brokered: r.brokered.rps / r.direct.rps },
  }));
  for (const s of summary)
    console.log(`${s.mode.padEnd(9)} x${String(s.clients).padEnd(2)}  latency tunnel ${s.latency_ratio.tunnel.toFixed(2)}x brokered ${s.latency_ratio.brokered.toFixed(2)}x` +
      `  rps tunnel ${s.rps_ratio.tunnel.toFixed(2)}x brokered ${s.rps_ratio.brokered.toFixed(2)}x` +
      `  (brokered adds ${(s.brokered.mean - s.direct.mean).toFixed(1)} ms)`);
  console.log(JSON.stringify({ bench: 'egress', requests_per_client: PER_CLIENT, results: summary }));
} finally {
  await d?.stop().catch((e) => console.error(e.message));
  for (const p of procs) p.kill('SIGKILL');
  await reg?.stop();
  for (const ns of [NS, OUT]) { try { ip('netns', 'del', ns); } catch { /* already gone */ } }
  removeTestNames(NS);
  rmSync(TLSDIR, { recursive: true, force: true });
}
