// Networking on real TCG guests, entirely inside network namespaces this
// test makes: `hmt-*` holds the daemon (its bridge, TAPs, nftables table
// and guests), `hmo-*` stands for the outside world behind a veth pair
// (192.0.2.2 there, 192.0.2.1 on the daemon's side). Traffic goes only to
// loopback and to these namespaces; both are deleted at the end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { pulledDataDir } from '../harness/images.mjs';
import { createInstance, getInstance, waitState, vmmPid, processAlive, readLogs } from '../harness/instances.mjs';
import { startRegistry, pushFixtures, pushImage, busyboxRoot } from '../registry/registry.mjs';
import { outsidePair, makeTestCa, removeTestNames, echoServers, curlLayer } from '../harness/egress.mjs';

const tag = randomBytes(3).toString('hex');
const NS = `hmt-${tag}`;
const OUT = `hmo-${tag}`;
const BAD = `hmb-${tag}`;
const SUBNET = '10.123.0.0/16';
const GW = '10.123.0.1';
const BRIDGE = 'hmbr0';
// The API listens on every address of the namespace, the bridge's included,
// so only the nftables rule keeps guests from it.
const NETENV = { SUBNET_CIDR: SUBNET, BRIDGE_NAME: BRIDGE, DNS_SERVER: '192.0.2.2', LISTEN_ADDR: '0.0.0.0' };

const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });
const inNs = (ns, ...a) => execFileSync('ip', ['netns', 'exec', ns, ...a], { encoding: 'utf8' });
const servers = [];

// A small HTTP server inside a namespace that answers with the caller's address.
async function serveIn(ns, host, port) {
  const code = `require('http').createServer((q, s) => s.end('from ' + q.socket.remoteAddress)).listen(${port}, '${host}', () => console.log('ready'))`;
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(p);
  await new Promise((res, rej) => { p.stdout.once('data', res); p.once('exit', (c) => rej(new Error(`server in ${ns} exited ${c}`))); });
}

// A DNS server (UDP) inside a namespace: every A question is answered 1.2.3.4.
async function dnsIn(ns, host, port) {
  const code = `const s = require('dgram').createSocket('udp4');
    s.on('message', (q, r) => { let i = 12; while (q[i]) i += q[i] + 1; const question = q.subarray(12, i + 5);
      const head = Buffer.from([q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
      const answer = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
      s.send(Buffer.concat([head, question, answer]), r.port, r.address); });
    s.bind(${port}, '${host}', () => console.log('ready'))`;
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(p);
  await new Promise((res, rej) => { p.stdout.once('data', res); p.once('exit', (c) => rej(new Error(`udp server in ${ns} exited ${c}`))); });
}

// Outside: 8082 sends 2 MiB to whoever asks; 8083 takes 2 MiB and answers
// how many milliseconds they took from first byte to last.
async function rateServers() {
  const code = `const net = require('net');
    net.createServer((c) => { c.once('data', () => c.end(Buffer.alloc(2 << 20, 120))); c.on('error', () => {}); }).listen(8082, '192.0.2.2');
    net.createServer((c) => { let n = 0, t0 = 0; c.on('data', (b) => { if (!t0) t0 = Date.now(); n += b.length; if (n >= (2 << 20)) c.end(String(Date.now() - t0)); }); c.on('error', () => {}); }).listen(8083, '192.0.2.2', () => console.log('ready'));`;
  const p = spawn('ip', ['netns', 'exec', OUT, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(p);
  await new Promise((res) => p.stdout.once('data', res));
}

// Credential brokering's outside (tests/harness/egress.mjs): a test CA, trusted by the
// daemon through EGRESS_UPSTREAM_CA and never by the guests, with echo servers in OUT.
const TLSDIR = mkdtempSync(join(tmpdir(), 'hypeman-egress-tls-'));

// GET url from inside the daemon's namespace (as the host would): the body, or null.
function fetchInNs(url) {
  try {
    return inNs(NS, process.execPath, '-e', `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(3000) }).then((r) => r.text()).then((t) => process.stdout.write(t), () => process.exit(3))`);
  } catch { return null; }
}

// An HTTP request from inside the daemon's namespace to 127.0.0.1:port with
// the given Host: {status, body}, or {error}.
function hostGet(port, host, headers = {}) {
  const code = `require('http').get({ host: '127.0.0.1', port: ${port}, path: '/', headers: ${JSON.stringify({ host, ...headers })}, timeout: 5000 }, (r) => { let b = ''; r.on('data', (c) => b += c); r.on('end', () => console.log(JSON.stringify({ status: r.statusCode, body: b }))); }).on('error', (e) => console.log(JSON.stringify({ error: e.code })));`;
  return JSON.parse(inNs(NS, process.execPath, '-e', code));
}

let reg, d, token, image, curlImage, dataDir, env;
before(async () => {
  for (const ns of [NS, OUT, BAD]) ip('netns', 'add', ns);
  outsidePair(NS, OUT);
  await serveIn(OUT, '192.0.2.2', 8081);
  await serveIn(OUT, '192.0.2.2', 80);
  await serveIn(OUT, '192.0.2.2', 443);
  await dnsIn(OUT, '192.0.2.2', 53);
  await serveIn(NS, '0.0.0.0', 9099); // a host service guests may reach (unlike the API)
  await rateServers();
  makeTestCa(TLSDIR, NS);
  await echoServers(OUT, TLSDIR, servers);

  // Images come from the registry on the host's loopback: pull them with a
  // network-less daemon here, then run the networked one on the same data dir.
  reg = await startRegistry();
  await pushFixtures(reg);
  image = `${reg.host}/test/busybox:latest`;
  curlImage = `${reg.host}/test/curl:latest`;
  await pushImage(reg, 'test/curl', 'latest', { layers: [busyboxRoot(), curlLayer(TLSDIR)], config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/bin:/bin'] } });
  dataDir = await pulledDataDir([image, curlImage]);
  env = { ...NETENV, DATA_DIR: dataDir, EGRESS_UPSTREAM_CA: join(TLSDIR, 'ca.pem') };
  d = await startDaemon({ netns: NS, env });
  token = d.token();
});
after(async () => {
  try {
    await d?.stop(); // deletes the instances first
  } finally {
    for (const s of servers) s.kill('SIGKILL');
    await reg?.stop();
    for (const ns of [NS, OUT, BAD]) { try { ip('netns', 'del', ns); } catch { /* already gone */ } }
    removeTestNames(NS);
    rmSync(TLSDIR, { recursive: true, force: true });
  }
});

const cli = (args, opts = {}) => runCli(args, { env: { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: token }, ...opts });
const sh = async (name, cmd) => (await cli(['exec', name, 'sh', '-c', cmd])).stdout;
// An HTTP GET from inside a guest with busybox nc (its static wget cannot
// resolve anything): the body, or 'unreachable'.
async function guestGet(name, host, port) {
  const out = await sh(name, `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${host} ${port}`);
  const i = out.indexOf('\r\n\r\n');
  return i < 0 ? 'unreachable' : out.slice(i + 4);
}
const taps = () => ip('-n', NS, '-o', 'link', 'show').split('\n').map((l) => l.split(': ')[1]?.split('@')[0]).filter((n) => n?.startsWith('hm-'));
const ruleset = () => inNs(NS, 'nft', 'list', 'table', 'ip', 'hypeman');
ruleset.bridge = () => inNs(NS, 'nft', 'list', 'table', 'bridge', 'hypeman');

async function serveFromGuest(name) {
  const c = await createInstance(d, token, {
    name, image, size: '256MB', vcpus: 1,
    cmd: ['sh', '-c', 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www'],
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  await waitState(d, token, c.body.id, ['Running']);
  return c.body;
}

let web, peer;
test('an instance gets an address, a MAC and an isolated TAP on the bridge; the host reaches its server', async () => {
  web = await serveFromGuest('web');
  assert.equal(web.network.enabled, true);
  assert.match(web.network.ip, /^10\.123\.\d+\.\d+$/);
  assert.notEqual(web.network.ip, GW);
  const [, , b2, b3] = web.network.ip.split('.').map(Number);
  assert.equal(web.network.mac, `02:00:00:7b:${b2.toString(16).padStart(2, '0')}:${b3.toString(16).padStart(2, '0')}`);
  const tap = `hm-${web.id.slice(0, 12)}`;
  const link = JSON.parse(ip('-n', NS, '-d', '-j', 'link', 'show', 'dev', tap))[0];
  assert.equal(link.master, BRIDGE);
  assert.equal(link.linkinfo.info_slave_data.isolated, true);
  let body = null;
  for (let i = 0; i < 50 && body === null; i++) {
    body = fetchInNs(`http://${web.network.ip}:8080/`);
    if (body === null) await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(body, 'web\n');
  // Inside: eth0 has the address, the default route goes to the gateway, DNS is set.
  const inside = await sh('web', 'ip -4 addr show eth0; ip route; cat /etc/resolv.conf');
  assert.match(inside, new RegExp(`inet ${web.network.ip.replaceAll('.', '\\.')}/16`));
  assert.match(inside, new RegExp(`default via ${GW.replaceAll('.', '\\.')}`));
  assert.match(inside, /nameserver 192\.0\.2\.2/);
  const stats = await (await d.fetch(`/instances/${web.id}/stats`, { token })).json();
  assert.ok(stats.network_rx_bytes > 0 && stats.network_tx_bytes > 0, JSON.stringify(stats));
});

test('a guest reaches the outside through NAT (the far side sees the host address)', async () => {
  assert.equal(await guestGet('web', '192.0.2.2', 8081), 'from 192.0.2.1');
});

test('instances cannot reach each other, nor the API; other host services stay reachable', async () => {
  peer = await serveFromGuest('peer');
  assert.notEqual(peer.network.ip, web.network.ip);
  // The host sees both; the guests cannot see each other.
  let body = null;
  for (let i = 0; i < 50 && body === null; i++) {
    body = fetchInNs(`http://${peer.network.ip}:8080/`);
    if (body === null) await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(body, 'peer\n');
  assert.match(ruleset(), new RegExp(`iifname "${BRIDGE}" tcp dport ${d.port} drop`));
  // No IPv6 from the instances: to the host (whose services listen on :: too) nor through it.
  const v6 = inNs(NS, 'nft', 'list', 'table', 'ip6', 'hypeman');
  assert.match(v6, new RegExp(`hook input priority filter; policy accept;\\s+iifname "${BRIDGE}" drop`));
  assert.match(v6, new RegExp(`hook forward priority filter; policy accept;\\s+iifname "${BRIDGE}" drop[^\\n]*\\n\\s+oifname "${BRIDGE}" drop`));
  assert.equal(await guestGet('web', GW, 9099), `from ${web.network.ip}`); // the control
  assert.equal(await guestGet('web', peer.network.ip, 8080), 'unreachable');
  assert.equal(await guestGet('peer', web.network.ip, 8080), 'unreachable');
  assert.equal(await guestGet('web', GW, d.port), 'unreachable');
  assert.equal(await guestGet('web', '192.0.2.1', d.port), 'unreachable');
});

const KEY = 'k'.repeat(40);
test('ingress: host:port to instance:port by Host header, patterns, header auth; conflicts refused', async () => {
  const post = (body) => d.fetch('/ingresses', { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  let r = await post({
    name: 'site', tags: { team: 'web' },
    rules: [
      { match: { hostname: 'web.test', port: 8088 }, target: { instance: 'web', port: 8080 } },
      { match: { hostname: '{instance}.apps.test', port: 8088 }, target: { instance: '{instance}', port: 8080 } },
      { match: { hostname: 'secret.test', port: 8088 }, target: { instance: 'peer', port: 8080 }, request_header_auth: { header: 'X-Key', value: KEY } },
    ],
  });
  assert.equal(r.status, 201);
  const ing = await r.json();
  assert.match(ing.id, /^[a-z0-9]{24}$/);
  assert.equal(ing.rules[0].match.port, 8088);
  assert.equal(ing.rules[0].tls, false);
  assert.deepEqual(hostGet(8088, 'web.test'), { status: 200, body: 'web\n' });
  assert.deepEqual(hostGet(8088, 'WEB.test:8088'), { status: 200, body: 'web\n' });
  assert.deepEqual(hostGet(8088, 'peer.apps.test'), { status: 200, body: 'peer\n' });
  assert.deepEqual(hostGet(8088, 'web.apps.test'), { status: 200, body: 'web\n' });
  assert.equal(hostGet(8088, 'nobody.test').status, 404);
  assert.equal(hostGet(8088, 'ghost.apps.test').status, 502);
  assert.equal(hostGet(8088, 'secret.test').status, 403);
  assert.equal(hostGet(8088, 'secret.test', { 'x-key': KEY.slice(1) + 'x' }).status, 403);
  assert.deepEqual(hostGet(8088, 'secret.test', { 'x-key': KEY }), { status: 200, body: 'peer\n' });
  // Reads: by name, by id prefix, listed with a tag filter.
  assert.equal((await (await d.fetch('/ingresses/site', { token })).json()).id, ing.id);
  assert.equal((await (await d.fetch(`/ingresses/${ing.id.slice(0, 8)}`, { token })).json()).name, 'site');
  assert.deepEqual((await (await d.fetch('/ingresses?tags[team]=web', { token })).json()).map((i) => i.id), [ing.id]);
  assert.deepEqual(await (await d.fetch('/ingresses?tags[team]=none', { token })).json(), []);
  // Conflicts: a routed hostname, a taken name, a port the host has in use, TLS; none leaves anything.
  r = await post({ name: 'again', rules: [{ match: { hostname: 'web.test', port: 8088 }, target: { instance: 'peer', port: 8080 } }] });
  assert.equal(r.status, 409);
  assert.equal((await r.json()).code, 'hostname_in_use');
  r = await post({ name: 'site', rules: [{ match: { hostname: 'other.test', port: 8089 }, target: { instance: 'peer', port: 8080 } }] });
  assert.equal(r.status, 409);
  assert.equal(hostGet(8089, 'other.test').error, 'ECONNREFUSED');
  r = await post({ name: 'clash', rules: [{ match: { hostname: 'api.test', port: d.port }, target: { instance: 'peer', port: 8080 } }] });
  assert.equal(r.status, 409);
  assert.equal((await r.json()).code, 'port_unavailable');
  r = await post({ name: 'secure', rules: [{ match: { hostname: 's.test', port: 8443 }, target: { instance: 'peer', port: 8080 }, tls: true }] });
  assert.equal(r.status, 400); // no certificate for it yet (the next test supplies one)
  assert.equal((await r.json()).code, 'certificate_missing');
  r = await post({ name: 'bad', rules: [{ match: { hostname: 'a..test' }, target: { instance: 'peer', port: 8080 } }] });
  assert.equal(r.status, 400);
  assert.equal((await (await d.fetch('/ingresses', { token })).json()).length, 1);
  // A second ingress on its own port, then deleted: its port closes, the first stays.
  r = await post({ name: 'temp', rules: [{ match: { hostname: 'peer.test', port: 8090 }, target: { instance: 'peer', port: 8080 } }] });
  assert.equal(r.status, 201);
  assert.deepEqual(hostGet(8090, 'peer.test'), { status: 200, body: 'peer\n' });
  assert.equal((await d.fetch('/ingresses/temp', { method: 'DELETE', token })).status, 204);
  assert.equal(hostGet(8090, 'peer.test').error, 'ECONNREFUSED');
  assert.equal((await d.fetch('/ingresses/temp', { token })).status, 404);
  assert.deepEqual(hostGet(8088, 'web.test'), { status: 200, body: 'web\n' });
});

// An HTTPS request from inside the daemon's namespace, trusting only `ca`.
function tlsGet(port, servername, ca) {
  const code = `require('https').get({ host: '127.0.0.1', port: ${port}, path: '/', servername: ${JSON.stringify(servername)}, headers: { host: ${JSON.stringify(servername)} }, ca: ${JSON.stringify(ca)}, timeout: 5000 }, (r) => { let b = ''; r.on('data', (c) => b += c); r.on('end', () => console.log(JSON.stringify({ status: r.statusCode, body: b }))); }).on('error', (e) => console.log(JSON.stringify({ error: e.code || e.message })));`;
  return JSON.parse(inNs(NS, process.execPath, '-e', code));
}

test('ingress TLS with a certificate the user supplies: SNI picks it, HTTP redirects, bad rules refused', async () => {
  const certs = join(dataDir, 'ingress', 'certs');
  mkdirSync(certs, { recursive: true });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=secure.test',
    '-addext', 'subjectAltName=DNS:secure.test,DNS:*.tls.test', '-keyout', join(certs, 'site.key'), '-out', join(certs, 'site.crt')], { stdio: 'ignore' });
  const ca = readFileSync(join(certs, 'site.crt'), 'utf8');
  const post = (body) => d.fetch('/ingresses', { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  let r = await post({ name: 'secure', rules: [
    { match: { hostname: 'secure.test', port: 8443 }, target: { instance: 'web', port: 8080 }, tls: true, redirect_http: true },
    { match: { hostname: '{instance}.tls.test', port: 8443 }, target: { instance: '{instance}', port: 8080 }, tls: true },
  ] });
  assert.equal(r.status, 201, await r.text());
  assert.deepEqual(tlsGet(8443, 'secure.test', ca), { status: 200, body: 'web\n' });
  assert.deepEqual(tlsGet(8443, 'peer.tls.test', ca), { status: 200, body: 'peer\n' });
  assert.ok(tlsGet(8443, 'unknown.test', ca).error, 'no certificate for that name: the handshake fails');
  const redirect = JSON.parse(inNs(NS, process.execPath, '-e', `require('http').get({ host: '127.0.0.1', port: 80, path: '/a/b?c=d', headers: { host: 'secure.test' } }, (r) => console.log(JSON.stringify({ status: r.statusCode, location: r.headers.location })))`));
  assert.deepEqual(redirect, { status: 301, location: 'https://secure.test:8443/a/b?c=d' });
  r = await post({ name: 'nocert', rules: [{ match: { hostname: 'nocert.test', port: 8443 }, target: { instance: 'web', port: 8080 }, tls: true }] });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).code, 'certificate_missing');
  r = await post({ name: 'mixed', rules: [{ match: { hostname: 'plain.test', port: 8443 }, target: { instance: 'web', port: 8080 } }] });
  assert.equal(r.status, 409);
  assert.equal((await r.json()).code, 'port_conflict');
  r = await post({ name: 'noredir', rules: [{ match: { hostname: 'x.test', port: 8091 }, target: { instance: 'web', port: 8080 }, redirect_http: true }] });
  assert.equal(r.status, 400);
  assert.equal((await d.fetch('/ingresses/secure', { method: 'DELETE', token })).status, 204);
  assert.equal(tlsGet(8443, 'secure.test', ca).error, 'ECONNREFUSED');
});

test('network.enabled false: no address, no TAP, only loopback inside; bad network input is 400', async () => {
  const before = taps().length;
  const c = await createInstance(d, token, { name: 'offline', image, size: '256MB', vcpus: 1, network: { enabled: false }, cmd: ['sleep', '1000'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  assert.deepEqual([c.body.network.enabled, c.body.network.ip, c.body.network.mac], [false, null, null]);
  await waitState(d, token, c.body.id, ['Running']);
  assert.equal(taps().length, before);
  assert.doesNotMatch(await sh('offline', 'ip -o link'), /eth0/);
  for (const network of ['yes', { enabled: 'true' }]) {
    const bad = await createInstance(d, token, { name: 'badnet', image, network });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
  }
  assert.equal((await d.fetch(`/instances/${c.body.id}`, { method: 'DELETE', token })).status, 204);
});

test('limits: bandwidth_download and _upload hold the guest near its rate; disk_io_bps throttles its disks', { timeout: 120000 }, async (t) => {
  const c = await createInstance(d, token, {
    name: 'slow', image, size: '256MB', vcpus: 1, disk_io_bps: '2MB/s', cmd: ['sleep', '1000'],
    network: { bandwidth_download: '4Mbps', bandwidth_upload: '500kB/s' },
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  assert.equal(c.body.network.bandwidth_download, '4Mbps');
  assert.equal(c.body.network.bandwidth_upload, '4Mbps'); // 500kB/s, decimal as rates are
  assert.equal(c.body.disk_io_bps, '2MB/s');
  await waitState(d, token, c.body.id, ['Running']);
  const tap = `hm-${c.body.id.slice(0, 12)}`;
  assert.match(inNs(NS, 'tc', 'qdisc', 'show', 'dev', tap), /tbf .*rate 4Mbit/);
  assert.match(ruleset(), new RegExp(`ip saddr ${c.body.network.ip.replaceAll('.', '\\.')} limit rate over 500000 bytes/second`));
  const limit = 500000; // bytes per second, both ways
  // Download 2 MiB: the guest times it.
  const down = (await sh('slow', `s=$(cut -d' ' -f1 /proc/uptime); printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 192.0.2.2 8082 | wc -c; cut -d' ' -f1 /proc/uptime; echo $s`)).trim().split(/\s+/).map(Number);
  const [bytes, end, start] = down;
  assert.equal(bytes, 2 << 20);
  const downRate = bytes / (end - start);
  assert.ok(downRate > 0.6 * limit && downRate < 1.2 * limit, `download ${Math.round(downRate)} B/s against ${limit}`);
  // Upload 2 MiB: the far side times it.
  const ms = Number((await sh('slow', 'dd if=/dev/zero bs=64k count=32 2>/dev/null | nc -w 10 192.0.2.2 8083')).trim());
  const upRate = (2 << 20) / (ms / 1000);
  // A policer (nftables limit) rather than a shaper: TCP saws around the rate.
  assert.ok(upRate > 0.3 * limit && upRate < 1.5 * limit, `upload ${Math.round(upRate)} B/s against ${limit}`);
  // 4 MiB written and synced at 2MB/s takes about two seconds.
  const disk = (await sh('slow', 's=$(cut -d" " -f1 /proc/uptime); dd if=/dev/zero of=/tmp/x bs=64k count=64 conv=fsync 2>/dev/null; e=$(cut -d" " -f1 /proc/uptime); echo $s $e')).trim().split(' ').map(Number);
  const secs = disk[1] - disk[0];
  assert.ok(secs > 1.4 && secs < 6, `4 MiB at 2MB/s took ${secs} s`);
  t.diagnostic(`download ${Math.round(downRate)} B/s, upload ${Math.round(upRate)} B/s (limit ${limit}); 4 MiB synced at 2MB/s in ${secs.toFixed(2)} s`);
  // Stopping the VM takes its limits away with its TAP.
  assert.equal((await d.fetch(`/instances/${c.body.id}`, { method: 'DELETE', token })).status, 204);
  assert.ok(!ruleset().includes(`ip saddr ${c.body.network.ip} limit`));
  // The others have their default share: host capacity by vCPUs.
  assert.match(ruleset(), new RegExp(`ip saddr ${web.network.ip.replaceAll('.', '\\.')} limit rate over \\d+ bytes/second`));
  for (const [field, value] of [['bandwidth_download', '1 zillion'], ['bandwidth_upload', 5]]) {
    const bad = await createInstance(d, token, { name: 'badrate', image, network: { [field]: value } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, `invalid_${field.replace('_', '_')}`);
  }
  const bad = await createInstance(d, token, { name: 'baddisk', image, disk_io_bps: 'fast' });
  assert.equal(bad.status, 400);
});

// A client in the daemon's namespace holding one connection through the
// ingress on `port`: it sends an HTTP head for `host`, then each line given
// to say(); everything that comes back is in out(); end() closes it. By
// default the head asks for a protocol switch, so that the lines after it
// pass as raw bytes (the proxy frames HTTP requests otherwise).
function holdConnection(port, host, headers = { Connection: 'Upgrade', Upgrade: 'raw' }) {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\\r\\n`).join('');
  return holdSocket(`const s = require('net').connect(${port}, '127.0.0.1', () => s.write('GET / HTTP/1.1\\r\\nHost: ${host}\\r\\n${extra}\\r\\n'));`);
}

// One connection a client in the daemon's namespace holds, made by connectCode
// (which names the socket `s`): lines given to say() are sent, what comes back
// is in out(), `[closed]` once it ends; end() closes it.
function holdSocket(connectCode) {
  const p = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', connectCode +
    " s.on('data', (b) => process.stdout.write(b.toString())); s.on('error', (e) => console.log('[error ' + (e.code || e.message) + ']'));" +
    " s.on('close', () => { console.log('[closed]'); process.exit(0); });" +
    " process.stdin.on('data', (b) => { for (const t of b.toString().split('\\n').filter(Boolean)) { if (t === 'end') s.end(); else s.write(t + '\\n'); } });"],
  { stdio: ['pipe', 'pipe', 'inherit'] });
  servers.push(p);
  let out = '';
  p.stdout.on('data', (b) => { out += b; });
  return {
    say: (line) => p.stdin.write(line + '\n'),
    end: () => p.stdin.write('end\n'),
    out: () => out,
    async until(re) {
      for (let i = 0; i < 300 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(out, re);
    },
  };
}

test('drain: a UKC stop with drain_timeout_ms answers draining, refuses new ingress connections (503) while a held one flows, and stops once it closes; a drain that runs out stops anyway', { timeout: 180000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const c = await createInstance(d, token, { name: 'drainee', image, size: '256MB', vcpus: 1, cmd: ['sh', '-c', 'exec nc -ll -p 8080 -e cat'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  await waitState(d, token, c.body.id, ['Running']);
  let r = await d.fetch('/ingresses', { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'drainage', rules: [{ match: { hostname: 'drain.test', port: 8092 }, target: { instance: 'drainee', port: 8080 } }] }) });
  assert.equal(r.status, 201);
  const stop = async (body) => (await (await d.fetch('/v1/instances/stop', { method: 'PUT', token, headers: json, body: JSON.stringify(body) })).json()).data.instances[0];
  const ukcState = async () => (await (await d.fetch('/v1/instances?name=drainee', { token })).json()).data.instances[0].state;
  const oplog = async () => JSON.stringify(await readLogs(d, token, c.body.id, { source: 'hypeman' }));

  // a connection through the ingress to the guest's echo server
  const held = holdConnection(8092, 'drain.test');
  held.say('one');
  await held.until(/^one$/m);
  const e = await stop([{ name: 'drainee', drain_timeout_ms: 60000 }]);
  assert.equal(e.status, 'success', JSON.stringify(e));
  assert.equal(e.state, 'draining');
  // while it drains: new connections are refused, the held one still flows
  const refused = hostGet(8092, 'drain.test');
  assert.equal(refused.status, 503);
  assert.match(refused.body, /draining/);
  held.say('two');
  await held.until(/^two$/m);
  assert.equal(await ukcState(), 'draining');
  // closed: the stop goes on, long before the drain's minute
  held.end();
  await held.until(/\[closed\]/);
  const w = await (await d.fetch('/v1/instances/wait?name=drainee&state=stopped&timeout_s=30', { token })).json();
  assert.equal(w.data.instances[0].state, 'stopped', JSON.stringify(w));
  assert.match(await oplog(), /msg=drained why=closed open=0/);

  // again, with a connection that stays open: the drain runs out and the stop goes on
  assert.equal((await d.fetch('/instances/drainee/start', { method: 'POST', token, headers: json, body: '{}' })).status, 200);
  await waitState(d, token, c.body.id, ['Running']);
  const stays = holdConnection(8092, 'drain.test');
  stays.say('three');
  await stays.until(/^three$/m);
  assert.equal((await stop([{ name: 'drainee', drain_timeout_ms: 1000 }])).state, 'draining');
  const w2 = await (await d.fetch('/v1/instances/wait?name=drainee&state=stopped&timeout_s=30', { token })).json();
  assert.equal(w2.data.instances[0].state, 'stopped');
  assert.match(await oplog(), /msg=drained why=timeout open=1/);
  // a suspend drains first too, and answers once it is in standby
  assert.equal((await d.fetch('/instances/drainee/start', { method: 'POST', token, headers: json, body: '{}' })).status, 200);
  await waitState(d, token, c.body.id, ['Running']);
  const sleeper = holdConnection(8092, 'drain.test');
  sleeper.say('four');
  await sleeper.until(/^four$/m);
  const sus = (await (await d.fetch('/v1/instances/suspend', { method: 'PUT', token, headers: json, body: JSON.stringify([{ name: 'drainee', drain_timeout_ms: 800 }]) })).json()).data.instances[0];
  assert.equal(sus.state, 'standby', JSON.stringify(sus));
  assert.equal(sus.previous_state, 'running');
  assert.equal((await oplog()).match(/msg=drained why=timeout open=1/g).length, 2);
  assert.equal((await d.fetch('/v1/instances/start', { method: 'PUT', token, headers: json, body: JSON.stringify([{ name: 'drainee', timeout_s: 60 }]) })).status, 200);
  assert.equal(await ukcState(), 'running'); // restored: not draining any more
  const after = holdConnection(8092, 'drain.test'); // new connections are taken again
  after.say('five');
  await after.until(/^five$/m);
  after.end();
  await after.until(/\[closed\]/);
  await stop([{ name: 'drainee', force: true }]);
  await d.fetch('/v1/instances/wait?name=drainee&state=stopped&timeout_s=30', { token });
  // a bad value is that entry's error, naming the field
  const bad = await stop([{ name: 'drainee', drain_timeout_ms: -2 }]);
  assert.equal(bad.status, 'error');
  assert.match(bad.message, /`drain_timeout_ms` must be an integer from -1/);
  assert.equal((await d.fetch('/ingresses/drainage', { method: 'DELETE', token })).status, 204);
  assert.equal((await d.fetch('/instances/drainee', { method: 'DELETE', token })).status, 204);
});

// n GETs at once from inside the daemon's namespace: their {status, body}.
function hostGetMany(port, host, n) {
  const code = `Promise.all(Array.from({ length: ${n} }, () => new Promise((res) => require('http').get({ host: '127.0.0.1', port: ${port}, path: '/', headers: { host: ${JSON.stringify(host)} }, timeout: 30000, agent: false }, (r) => { let b = ''; r.on('data', (c) => b += c); r.on('end', () => res({ status: r.statusCode, body: b })); }).on('error', (e) => res({ error: e.code }))))).then((a) => console.log(JSON.stringify(a)));`;
  return JSON.parse(inNs(NS, process.execPath, '-e', code));
}

test('auto-standby: an idle instance behind an ingress goes to standby; a request wakes it with the right body, 40 at once with one restore; a hold keeps it awake; the status says where it stands', { timeout: 240000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const c = await createInstance(d, token, {
    name: 'sleepy', image, size: '256MB', vcpus: 1, auto_standby: { enabled: true, idle_timeout: '2s' },
    cmd: ['sh', '-c', 'mkdir -p /www && echo awake > /www/index.html && exec httpd -f -p 8080 -h /www'],
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  assert.deepEqual(c.body.auto_standby, { enabled: true, idle_timeout: '2s', ignore_source_cidrs: [], ignore_destination_ports: [] });
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  let r = await d.fetch('/ingresses', { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'naps', rules: [{ match: { hostname: 'sleepy.test', port: 8093 }, target: { instance: 'sleepy', port: 8080 } }] }) });
  assert.equal(r.status, 201);
  const status = async () => (await d.fetch(`/instances/${id}/auto-standby/status`, { token })).json();
  const wakes = async () => (JSON.stringify(await readLogs(d, token, id, { source: 'hypeman' })).match(/msg=restored /g) || []).length;
  let st = await status();
  assert.equal(st.enabled, true);
  assert.equal(st.idle_timeout, '2s');
  assert.equal(st.tracking_mode, 'ingress_connections');
  assert.deepEqual(hostGet(8093, 'sleepy.test'), { status: 200, body: 'awake\n' });

  // idle: standby, by itself
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  st = await status();
  assert.equal(st.status, 'ineligible');
  assert.equal(st.reason, 'instance_not_running');
  r = await d.fetch(`/instances/${id}/auto-standby/hold`, { method: 'POST', token });
  assert.equal(r.status, 409);
  assert.equal((await r.json()).code, 'instance_in_standby');
  // a request wakes it and gets the program's answer
  assert.deepEqual(hostGet(8093, 'sleepy.test'), { status: 200, body: 'awake\n' });
  assert.equal((await getInstance(d, token, id)).body.state, 'Running');
  assert.equal(await wakes(), 1);

  // asleep again, then twenty first requests at once: every one answered, one restore
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  const many = hostGetMany(8093, 'sleepy.test', 40);
  assert.deepEqual(many, Array.from({ length: 40 }, () => ({ status: 200, body: 'awake\n' })));
  assert.equal(await wakes(), 2);

  // asleep across a daemon restart: the next daemon serves the route and the request still wakes it
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  assert.equal((await d.stop({ keepData: true })).code, 0);
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  assert.equal((await getInstance(d, token, id)).body.state, 'Standby');
  assert.deepEqual(hostGet(8093, 'sleepy.test'), { status: 200, body: 'awake\n' });
  assert.equal(await wakes(), 3);

  // a hold, renewed, keeps it awake past its idle timeout; then it sleeps again
  for (let i = 0; i < 5; i++) {
    r = await d.fetch(`/instances/${id}/auto-standby/hold`, { method: 'POST', token });
    assert.equal(r.status, 200);
    const held = await r.json();
    assert.ok(held.hold_until, JSON.stringify(held));
    await new Promise((res) => setTimeout(res, 1000));
  }
  assert.equal((await getInstance(d, token, id)).body.state, 'Running');
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });

  // disabled by a PATCH: it stays up however idle
  assert.deepEqual(hostGet(8093, 'sleepy.test'), { status: 200, body: 'awake\n' });
  r = await d.fetch(`/instances/${id}`, { method: 'PATCH', token, headers: json, body: JSON.stringify({ auto_standby: { enabled: false } }) });
  assert.equal(r.status, 200);
  assert.equal((await r.json()).auto_standby.enabled, false);
  await new Promise((res) => setTimeout(res, 3500));
  assert.equal((await getInstance(d, token, id)).body.state, 'Running');
  assert.equal((await status()).status, 'disabled');
  // the same policy set through the Unikraft Cloud API, as scale_to_zero: it sleeps again, and a request wakes it
  r = await d.fetch('/v1/instances', { method: 'PATCH', token, headers: json, body: JSON.stringify([{ name: 'sleepy', prop: 'scale_to_zero', op: 'set', value: { policy: 'on', stateful: true, cooldown_time_ms: 1500 } }]) });
  assert.equal((await r.json()).data.instances[0].status, 'success');
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  const v1 = (await (await d.fetch('/v1/instances?name=sleepy', { token })).json()).data.instances[0];
  assert.equal(v1.state, 'standby');
  assert.deepEqual(v1.scale_to_zero, { enabled: true, policy: 'on', stateful: true, cooldown_time_ms: 1500 });
  assert.deepEqual(hostGet(8093, 'sleepy.test'), { status: 200, body: 'awake\n' });
  r = await d.fetch(`/instances/${id}`, { method: 'PATCH', token, headers: json, body: JSON.stringify({ auto_standby: { enabled: false } }) });
  assert.equal(r.status, 200);
  // bad input: a 400 naming the field
  for (const [body, re] of [
    [{ auto_standby: { enabled: true, idle_timeout: 'soon' } }, /`auto_standby.idle_timeout` must be a duration/],
    [{ auto_standby: { enabled: true, idle_timeout: '10ms' } }, /idle timeout must be from 1000 ms/],
    [{ auto_standby: { enabled: true, ignore_source_cidrs: ['10.0.0.0/8'] } }, /`auto_standby.ignore_source_cidrs`: ignore lists are not available yet/],
  ]) {
    r = await d.fetch(`/instances/${id}`, { method: 'PATCH', token, headers: json, body: JSON.stringify(body) });
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match((await r.json()).message, re);
  }
  assert.equal((await d.fetch('/ingresses/naps', { method: 'DELETE', token })).status, 204);
  assert.equal((await d.fetch(`/instances/${id}`, { method: 'DELETE', token })).status, 204);
});

test('scale_to_zero idle: an instance sleeps with a connection open and silent; the next bytes of its client wake it and flow on over the same connection, both ways', { timeout: 180000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const c = await createInstance(d, token, { name: 'idler', image, size: '256MB', vcpus: 1, cmd: ['sh', '-c', 'exec nc -ll -p 8080 -e cat'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  let r = await d.fetch('/ingresses', { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'idles', rules: [{ match: { hostname: 'idle.test', port: 8095 }, target: { instance: 'idler', port: 8080 } }] }) });
  assert.equal(r.status, 201);
  r = await d.fetch('/v1/instances', { method: 'PATCH', token, headers: json, body: JSON.stringify([{ name: 'idler', prop: 'scale_to_zero', op: 'set', value: { policy: 'idle', stateful: true, cooldown_time_ms: 1500 } }]) });
  assert.equal((await r.json()).data.instances[0].status, 'success');
  const restores = async () => (JSON.stringify(await readLogs(d, token, id, { source: 'hypeman' })).match(/msg=restored /g) || []).length;
  const held = holdConnection(8095, 'idle.test');
  held.say('one');
  await held.until(/^one$/m);
  // silent: it goes to standby with the connection still open
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  assert.doesNotMatch(held.out(), /\[closed\]/);
  assert.equal(await restores(), 0);
  // the next bytes wake it and come back over the same connection
  held.say('two');
  await held.until(/^two$/m);
  assert.equal((await getInstance(d, token, id)).body.state, 'Running');
  assert.equal(await restores(), 1);
  held.say('three');
  await held.until(/^three$/m);
  assert.doesNotMatch(held.out(), /\[closed\]/);
  held.end();
  await held.until(/\[closed\]/);
  assert.equal((await d.fetch('/ingresses/idles', { method: 'DELETE', token })).status, 204);
  assert.equal((await d.fetch(`/instances/${id}`, { method: 'DELETE', token })).status, 204);
});

// A TLS connection from inside the daemon's namespace (no HTTP: a tls-only
// service's bytes), as holdConnection's.
function holdTls(port, servername, ca) {
  return holdSocket(`const s = require('tls').connect({ host: '127.0.0.1', port: ${port}, servername: ${JSON.stringify(servername)}, ca: ${JSON.stringify(ca)} });`);
}

test('UKC service groups: the official SDK makes, changes and deletes them; an instance made with its own group serves HTTPS on 443 (80 redirects), sleeps, and a request wakes it; a tls-only port routes by SNI across two members by their soft and hard limits', { timeout: 300000 }, async () => {
  const { UnikraftCloud, UnikraftCloudError } = await import('../sdk/node_modules/@unikraft/cloud/dist/esm/index.js');
  process.env.UKC_TOKEN = token;
  process.env.UKC_METRO = d.url;
  const ukc = new UnikraftCloud();
  const json = { 'content-type': 'application/json' };
  const v1 = async (method, path, body) => (await d.fetch(path, { method, token, headers: json, body: body === undefined ? undefined : JSON.stringify(body) })).json();
  const certs = join(dataDir, 'ingress', 'certs');
  mkdirSync(certs, { recursive: true });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=svc.test',
    '-addext', 'subjectAltName=DNS:*.svc.test', '-keyout', join(certs, 'svc.key'), '-out', join(certs, 'svc.crt')], { stdio: 'ignore' });
  const ca = readFileSync(join(certs, 'svc.crt'), 'utf8');

  // The SDK: create, read, change, delete; bad input refused by name
  const g = await ukc.services.create({ name: 'plain', services: [{ port: 443, destination_port: 8080, handlers: ['http', 'tls'] }], domains: [{ name: 'plain.svc.test.' }] });
  assert.equal(g.name, 'plain');
  assert.match(g.uuid, /^[0-9a-f-]{36}$/);
  assert.deepEqual(g.services, [{ port: 443, destination_port: 8080, protocol: 'tcp', handlers: ['tls', 'http'] }]);
  assert.deepEqual(g.domains, [{ fqdn: 'plain.svc.test' }]);
  assert.deepEqual(g.instances, []);
  // (one entry per change: the SDK hands back the first)
  let got = await ukc.services.get({ name: 'plain' }).update({ soft_limit: 5, hard_limit: 20 });
  assert.equal(got.soft_limit, 5);
  got = await ukc.services.get({ name: 'plain' }).refresh();
  assert.equal(got.hard_limit, 20);
  got = await ukc.services.get({ name: 'plain' }).edit().add({ domains: [{ name: 'also.svc.test.' }] }).apply();
  assert.deepEqual(got.domains, [{ fqdn: 'plain.svc.test' }, { fqdn: 'also.svc.test' }]);
  got = await ukc.services.get({ uuid: g.uuid }).refresh();
  assert.equal(got.domains.length, 2);
  for (const [spec, re] of [
    [{ services: [{ port: 80, handlers: ['tls'] }] }, /port 80 must have `http` and not `tls`/],
    [{ services: [{ port: 8443, handlers: ['http'] }] }, /other than 80 and 443 must have `tls` and not `http`/],
    [{ services: [{ port: 443 }], domains: [{ name: 'nocert.example.' }] }, /no certificate in .* covers nocert\.example/],
    [{ services: [{ port: 443, ip: '10.0.0.1' }] }, /per-service addresses are not available/],
    [{ services: [{ port: 443 }], autokill: { time_ms: 1000 } }, /autokill/],
    [{ services: [{ port: 443 }], domains: [{ name: 'plain.svc.test.' }] }, /plain\.svc\.test on port 443 is already routed/],
  ]) {
    await assert.rejects(ukc.services.create(spec), (e) => { assert.ok(e instanceof UnikraftCloudError, String(e)); assert.match(e.message, re); return true; }, JSON.stringify(spec));
  }
  await ukc.services.get({ name: 'plain' }).delete();
  assert.equal((await v1('GET', '/v1/services?name=plain')).data.service_groups[0].error, 8);

  // An instance with its own group: HTTPS on 443, 80 redirects there; the instance names its group
  let r = await v1('POST', '/v1/instances', {
    name: 'svcweb', image, memory_mb: 256, autostart: true, timeout_s: 60,
    args: ['sh', '-c', 'mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 8080 -h /www'],
    scale_to_zero: { policy: 'on', stateful: true, cooldown_time_ms: 1500 },
    service_group: { services: [{ port: 443, destination_port: 8080 }, { port: 80, destination_port: 443, handlers: ['http', 'redirect'] }], domains: [{ name: 'web.svc.test.' }] },
  });
  assert.equal(r.status, 'success', JSON.stringify(r));
  const web = r.data.instances[0];
  assert.equal(web.service_group.name, 'svcweb');
  assert.deepEqual(web.service_group.domains, [{ fqdn: 'web.svc.test' }]);
  const group = (await v1('GET', '/v1/services?name=svcweb')).data.service_groups[0];
  assert.equal(group.persistent, false);
  assert.deepEqual(group.instances, [{ uuid: web.uuid, name: 'svcweb' }]);
  assert.deepEqual(tlsGet(443, 'web.svc.test', ca), { status: 200, body: 'served\n' });
  const redirect = JSON.parse(inNs(NS, process.execPath, '-e', `require('http').get({ host: '127.0.0.1', port: 80, path: '/x?y=1', headers: { host: 'web.svc.test' } }, (r) => console.log(JSON.stringify({ status: r.statusCode, location: r.headers.location })))`));
  assert.deepEqual(redirect, { status: 301, location: 'https://web.svc.test/x?y=1' });
  // idle: standby; a request through the group wakes it
  await waitState(d, token, web.uuid, ['Standby'], { timeoutMs: 30000 });
  assert.equal((await v1('GET', `/v1/instances/${web.uuid}`)).data.instances[0].state, 'standby');
  assert.deepEqual(tlsGet(443, 'web.svc.test', ca), { status: 200, body: 'served\n' });
  assert.equal((await v1('GET', `/v1/instances/${web.uuid}`)).data.instances[0].state, 'running');
  // a group with a member cannot go; the member's delete takes its own group with it
  r = await v1('DELETE', '/v1/services', [{ name: 'svcweb' }]);
  assert.match(r.data.service_groups[0].message, /has 1 instance/);
  r = await v1('DELETE', '/v1/instances', [{ uuid: web.uuid }]);
  assert.equal(r.status, 'success', JSON.stringify(r));
  assert.equal((await v1('GET', '/v1/services?name=svcweb')).data.service_groups[0].error, 8);
  assert.equal(tlsGet(443, 'web.svc.test', ca).error, 'ECONNREFUSED');

  // tls-only on 9443 by SNI, two members, soft limit 1 and hard limit 1: one connection each, a third refused
  r = await v1('POST', '/v1/services', { name: 'echoes', services: [{ port: 9443, destination_port: 9000 }], domains: [{ name: 'echo.svc.test.' }], soft_limit: 1, hard_limit: 1 });
  assert.equal(r.status, 'success', JSON.stringify(r));
  assert.deepEqual(r.data.service_groups[0].services[0].handlers, ['tls']);
  r = await v1('POST', '/v1/instances', {
    name: 'echo', image, memory_mb: 256, autostart: true, timeout_s: 60, replicas: 1, service_group: { name: 'echoes' },
    args: ['sh', '-c', 'printf "#!/bin/sh\\nhostname\\nexec cat\\n" > /e.sh && chmod +x /e.sh && exec nc -ll -p 9000 -e /e.sh'],
  });
  assert.equal(r.status, 'success', JSON.stringify(r));
  assert.deepEqual(r.data.instances.map((i) => i.service_group.name), ['echoes', 'echoes']);
  const one = holdTls(9443, 'echo.svc.test', ca);
  await one.until(/^echo(-1)?\n/);
  const first = one.out().split('\n')[0];
  const second = holdTls(9443, 'echo.svc.test', ca);
  await second.until(/^echo(-1)?\n/);
  assert.notEqual(second.out().split('\n')[0], first, 'the soft limit sends the second connection to the other member');
  const third = holdTls(9443, 'echo.svc.test', ca);
  await third.until(/\[closed\]|\[error/);
  assert.doesNotMatch(third.out(), /^echo/, 'both members at their hard limit: refused');
  one.say('ping');
  await one.until(/^ping$/m);
  one.end();
  await one.until(/\[closed\]/);
  const fourth = holdTls(9443, 'echo.svc.test', ca);
  await fourth.until(/^echo(-1)?\n/);
  assert.equal(fourth.out().split('\n')[0], first, 'a freed place is taken again');
  fourth.end();
  second.end();
  await fourth.until(/\[closed\]/);
  await second.until(/\[closed\]/);
  r = await v1('DELETE', '/v1/instances', [{ name: 'echo' }, { name: 'echo-1' }]);
  assert.equal(r.status, 'success', JSON.stringify(r));
  const left = (await v1('GET', '/v1/services?name=echoes')).data.service_groups[0];
  assert.deepEqual(left.instances, [], 'a persistent group stays, empty');
  assert.equal((await v1('DELETE', '/v1/services', [{ name: 'echoes' }])).status, 'success');
});

test('UKC stateless scale_to_zero: an idle instance is stopped (its VMM gone, shown as standby), the next request boots it and gets its answer; a user stop is not undone by traffic', { timeout: 240000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const v1 = async (method, path, body) => (await d.fetch(path, { method, token, headers: json, body: body === undefined ? undefined : JSON.stringify(body) })).json();
  let r = await v1('POST', '/v1/instances', {
    name: 'coldweb', image, memory_mb: 256, autostart: true, timeout_s: 60,
    args: ['sh', '-c', 'mkdir -p /www && echo cold > /www/index.html && exec httpd -f -p 8080 -h /www'],
    scale_to_zero: { policy: 'on', cooldown_time_ms: 1500 },
    service_group: { services: [{ port: 80, destination_port: 8080 }] },
  });
  assert.equal(r.status, 'success', JSON.stringify(r));
  const inst = r.data.instances[0];
  assert.deepEqual(inst.scale_to_zero, { enabled: true, policy: 'on', stateful: false, cooldown_time_ms: 1500 });
  assert.deepEqual(inst.service_group.domains, [{ fqdn: 'coldweb.localhost' }]);
  assert.deepEqual(hostGet(80, 'coldweb.localhost'), { status: 200, body: 'cold\n' });
  const pid = vmmPid(d, (await getInstance(d, token, inst.uuid)).body.id);
  assert.ok(pid && processAlive(pid), 'its QEMU runs');
  // idle: stopped by the platform, its VMM gone; UKC shows standby
  await waitState(d, token, inst.uuid, ['Stopped'], { timeoutMs: 30000 });
  assert.equal(processAlive(pid), false);
  let u = (await v1('GET', `/v1/instances/${inst.uuid}`)).data.instances[0];
  assert.equal(u.state, 'standby');
  assert.equal(u.stop_reason & 12, 4, `the platform stopped it, not a user: ${u.stop_reason}`);
  const boots = u.start_count;
  // a request boots it (held until httpd listens) and gets the answer
  assert.deepEqual(hostGet(80, 'coldweb.localhost'), { status: 200, body: 'cold\n' });
  u = (await v1('GET', `/v1/instances/${inst.uuid}`)).data.instances[0];
  assert.equal(u.state, 'running');
  assert.equal(u.start_count, boots + 1);
  // a user stop stays: traffic is refused, the instance stays stopped
  r = await v1('PUT', `/v1/instances/${inst.uuid}/stop`, {});
  assert.equal(r.status, 'success', JSON.stringify(r));
  await waitState(d, token, inst.uuid, ['Stopped'], { timeoutMs: 30000 });
  assert.equal(hostGet(80, 'coldweb.localhost').status, 503);
  u = (await v1('GET', `/v1/instances/${inst.uuid}`)).data.instances[0];
  assert.equal(u.state, 'stopped');
  assert.equal((await v1('DELETE', '/v1/instances', [{ uuid: inst.uuid }])).status, 'success');
});

test('UKC stateful first start: the instance boots, goes to standby as soon as its program accepts on the group port (long before its cooldown), and the first request is a restore', { timeout: 180000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const v1 = async (method, path, body) => (await d.fetch(path, { method, token, headers: json, body: body === undefined ? undefined : JSON.stringify(body) })).json();
  const r = await v1('POST', '/v1/instances', {
    name: 'primed', image, memory_mb: 256, autostart: true,
    args: ['sh', '-c', 'sleep 1; mkdir -p /www && echo ready > /www/index.html && exec httpd -f -p 8080 -h /www'],
    scale_to_zero: { policy: 'on', stateful: true, cooldown_time_ms: 600000 },
    service_group: { services: [{ port: 80, destination_port: 8080 }] },
  });
  assert.equal(r.status, 'success', JSON.stringify(r));
  const id = (await getInstance(d, token, r.data.instances[0].uuid)).body.id;
  await waitState(d, token, id, ['Standby'], { timeoutMs: 60000 });
  const oplog = async () => JSON.stringify(await readLogs(d, token, id, { source: 'hypeman' }));
  assert.match(await oplog(), /msg=primed port=8080 standby=yes/);
  assert.deepEqual(hostGet(80, 'primed.localhost'), { status: 200, body: 'ready\n' });
  assert.equal((await oplog()).match(/msg=restored /g)?.length, 1, 'the first request restored it');
  const u = (await v1('GET', '/v1/instances?name=primed')).data.instances[0];
  assert.equal(u.state, 'running');
  assert.equal((await v1('DELETE', '/v1/instances', [{ name: 'primed' }])).status, 'success');
});

test('keep-alive through the ingress: later requests on one connection get their heads rewritten and reach the same program; under idle the connection sleeps and its next request wakes it; under on an open connection keeps it awake; another Host ends the connection', { timeout: 180000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const SECRET = 'a-route-secret-of-at-least-32-chars';
  // A keep-alive HTTP server in sh: one answer per request head, numbered, on one connection.
  const ka = '#!/bin/sh\nn=0\nwhile read -r l; do case "$l" in "$(printf \'\\r\')"|"") n=$((n+1)); b="reply $n"; printf \'HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s\' ${#b} "$b";; X-Secret*) echo "LEAKED" >&2;; esac; done\n';
  const c = await createInstance(d, token, {
    name: 'keeper', image, size: '256MB', vcpus: 1,
    cmd: ['sh', '-c', `printf '%s' '${ka.replace(/'/g, "'\\''")}' > /ka.sh && chmod +x /ka.sh && exec nc -ll -p 8080 -e /ka.sh`],
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  let r = await d.fetch('/ingresses', { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'keeps', rules: [{ match: { hostname: 'ka.test', port: 8096 }, target: { instance: 'keeper', port: 8080 }, request_header_auth: { header: 'X-Secret', value: SECRET } }] }) });
  assert.equal(r.status, 201, await r.text());
  const restores = async () => (JSON.stringify(await readLogs(d, token, id, { source: 'hypeman' })).match(/msg=restored /g) || []).length;
  const ask = (held, host, secret = SECRET) => { held.say('GET /again HTTP/1.1\r'); held.say(`Host: ${host}\r`); if (secret) held.say(`X-Secret: ${secret}\r`); held.say('\r'); };
  const open = () => holdConnection(8096, 'ka.test', { 'X-Secret': SECRET });
  let held = open();
  await held.until(/reply 1/);
  ask(held, 'ka.test');
  await held.until(/reply 2/);
  // counted: one connection, two requests
  const m = (await (await d.fetch('/v1/instances/metrics?name=keeper', { token })).json()).data.instances[0];
  assert.equal(m.nconns, 1, JSON.stringify(m));
  assert.equal(m.ntotal, 2, JSON.stringify(m));
  // idle: asleep with the connection open; its next request wakes it, on the same program
  r = await d.fetch('/v1/instances', { method: 'PATCH', token, headers: json, body: JSON.stringify([{ name: 'keeper', prop: 'scale_to_zero', op: 'set', value: { policy: 'idle', stateful: true, cooldown_time_ms: 1500 } }]) });
  assert.equal((await r.json()).data.instances[0].status, 'success');
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  assert.doesNotMatch(held.out(), /\[closed\]/);
  ask(held, 'ka.test');
  await held.until(/reply 3/);
  assert.equal(await restores(), 1);
  // the secret never reached the program, on any request
  assert.doesNotMatch(JSON.stringify(await readLogs(d, token, id, { source: 'app' })), /LEAKED/);
  // a later request without the header, or for another Host, ends the connection
  ask(held, 'ka.test', null);
  await held.until(/\[closed\]/);
  assert.doesNotMatch(held.out(), /reply 4/, 'nothing answered the refused request');
  held = open(); // a new connection: a new program of nc's, counting from 1
  await held.until(/reply 1/);
  ask(held, 'other.test');
  await held.until(/\[closed\]/);
  assert.doesNotMatch(held.out(), /reply 2/);
  // on: an open connection, silent or not, keeps it awake
  r = await d.fetch('/v1/instances', { method: 'PATCH', token, headers: json, body: JSON.stringify([{ name: 'keeper', prop: 'scale_to_zero', op: 'set', value: { policy: 'on', stateful: true, cooldown_time_ms: 1500 } }]) });
  assert.equal((await r.json()).data.instances[0].status, 'success');
  held = open();
  await held.until(/reply 1/);
  await new Promise((res) => setTimeout(res, 4000));
  assert.equal((await getInstance(d, token, id)).body.state, 'Running');
  held.end();
  await held.until(/\[closed\]/);
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  assert.equal((await d.fetch('/ingresses/keeps', { method: 'DELETE', token })).status, 204);
  assert.equal((await d.fetch(`/instances/${id}`, { method: 'DELETE', token })).status, 204);
});

test('auto-standby sees traffic that does not pass our edges: a guest talking to the outside stays awake; once it is quiet it sleeps', { timeout: 120000 }, async () => {
  const c = await createInstance(d, token, {
    name: 'chatty', image, size: '256MB', vcpus: 1, auto_standby: { enabled: true, idle_timeout: '1s' },
    cmd: ['sh', '-c', 'while :; do [ -f /quiet ] || ping -c1 -W1 192.0.2.2 >/dev/null; sleep 0.3; done'],
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  await new Promise((res) => setTimeout(res, 4000));
  assert.equal((await getInstance(d, token, id)).body.state, 'Running', 'its pings are activity');
  await sh('chatty', 'touch /quiet');
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  assert.equal((await d.fetch(`/instances/${id}`, { method: 'DELETE', token })).status, 204);
});

// hostGet without blocking this process: a promise of {status, body} or {error}.
function hostGetAsync(port, host, timeoutMs = 30000) {
  const code = `require('http').get({ host: '127.0.0.1', port: ${port}, path: '/', headers: { host: ${JSON.stringify(host)} }, timeout: ${timeoutMs}, agent: false }, (r) => { let b = ''; r.on('data', (c) => b += c); r.on('end', () => console.log(JSON.stringify({ status: r.statusCode, body: b }))); }).on('timeout', function () { console.log(JSON.stringify({ error: 'timeout' })); this.destroy(); }).on('error', (e) => console.log(JSON.stringify({ error: e.code })));`;
  const p = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(p);
  let out = '';
  p.stdout.on('data', (b) => { out += b; });
  return new Promise((res) => p.on('exit', () => res(JSON.parse(out.trim().split('\n').pop() || '{"error":"none"}'))));
}

test('races: requests arriving while it goes to standby all get answers; a suspend or a stop during a wake leaves a consistent instance; a delete during one ends the request cleanly and leaves nothing', { timeout: 240000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const v1 = async (method, path, body) => (await d.fetch(path, { method, token, headers: json, body: body === undefined ? undefined : JSON.stringify(body) })).json();
  const c = await createInstance(d, token, {
    name: 'racer', image, size: '256MB', vcpus: 1, auto_standby: { enabled: true, idle_timeout: '1s' },
    cmd: ['sh', '-c', 'mkdir -p /www && echo raced > /www/index.html && exec httpd -f -p 8080 -h /www'],
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  let r = await d.fetch('/ingresses', { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'races', rules: [{ match: { hostname: 'race.test', port: 8097 }, target: { instance: 'racer', port: 8080 } }] }) });
  assert.equal(r.status, 201);
  const oplog = async () => JSON.stringify(await readLogs(d, token, id, { source: 'hypeman' }));
  // requests spaced around the idle timeout: some find it running, some going to sleep, some asleep
  for (let i = 0; i < 12; i++) {
    await new Promise((res) => setTimeout(res, 900 + (i % 4) * 150));
    assert.deepEqual(await hostGetAsync(8097, 'race.test'), { status: 200, body: 'raced\n' }, `request ${i}`);
  }
  assert.ok(((await oplog()).match(/msg=restored /g) || []).length >= 2, 'it slept and woke between them');

  // a suspend while a wake is under way: the request is answered or refused cleanly, and the
  // instance is running or in standby, never stuck; the next request is answered
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  const uuid = (await getInstance(d, token, id)).body.uuid;
  let pending = hostGetAsync(8097, 'race.test');
  await new Promise((res) => setTimeout(res, 30));
  await v1('PUT', `/v1/instances/${uuid}/suspend`, {});
  let got = await pending;
  assert.ok(got.status === 200 || got.status === 503 || got.error === 'ECONNRESET', JSON.stringify(got));
  assert.ok(['Running', 'Standby'].includes((await getInstance(d, token, id)).body.state));
  assert.deepEqual(await hostGetAsync(8097, 'race.test'), { status: 200, body: 'raced\n' });

  // a stop while a wake is under way: stopped at the end, and traffic does not undo a user's stop
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  pending = hostGetAsync(8097, 'race.test');
  await new Promise((res) => setTimeout(res, 30));
  r = await d.fetch(`/instances/${id}/stop`, { method: 'POST', token });
  got = await pending;
  assert.ok(got.status === 200 || got.status >= 500 || got.error, JSON.stringify(got));
  if (r.status === 200) {
    await waitState(d, token, id, ['Stopped'], { timeoutMs: 30000 });
    assert.ok((await hostGetAsync(8097, 'race.test')).status >= 500);
    assert.equal((await getInstance(d, token, id)).body.state, 'Stopped');
    r = await d.fetch(`/instances/${id}/start`, { method: 'POST', token });
    assert.equal(r.status, 200, await r.text());
    await waitState(d, token, id, ['Running']);
  } else {
    assert.equal(r.status, 409, await r.text()); // the stop came while it was in standby
  }

  // a delete while a wake is under way: the request ends (answered or refused), nothing is left
  await waitState(d, token, id, ['Standby', 'Stopped'], { timeoutMs: 30000 });
  const before = taps().length;
  pending = hostGetAsync(8097, 'race.test');
  await new Promise((res) => setTimeout(res, 30));
  assert.equal((await d.fetch(`/instances/${id}`, { method: 'DELETE', token })).status, 204);
  got = await pending;
  assert.ok(got.status === 200 || got.status >= 500 || got.error, JSON.stringify(got));
  assert.equal((await getInstance(d, token, id)).status, 404);
  assert.ok(taps().length <= before, 'no TAP left');
  assert.ok(!existsSync(join(dataDir, 'instances', id)), 'no files left');
  assert.equal((await d.fetch('/ingresses/races', { method: 'DELETE', token })).status, 204);
});

test('a wake that fails answers 503 wake_failed, and the instance says why (UKC message, auto-standby status error) until a wake succeeds', { timeout: 120000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const c = await createInstance(d, token, {
    name: 'brittle', image, size: '256MB', vcpus: 1, auto_standby: { enabled: true, idle_timeout: '1s' },
    cmd: ['sh', '-c', 'mkdir -p /www && echo fine > /www/index.html && exec httpd -f -p 8080 -h /www'],
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  let r = await d.fetch('/ingresses', { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'brittle', rules: [{ match: { hostname: 'brittle.test', port: 8098 }, target: { instance: 'brittle', port: 8080 } }] }) });
  assert.equal(r.status, 201);
  await waitState(d, token, id, ['Standby'], { timeoutMs: 30000 });
  // its saved device state goes missing: the restore cannot work
  const state = join(dataDir, 'instances', id, 'vm.state');
  renameSync(state, state + '.away');
  const got = hostGet(8098, 'brittle.test');
  assert.equal(got.status, 503, JSON.stringify(got));
  assert.equal(JSON.parse(got.body).code, 'wake_failed');
  assert.equal((await getInstance(d, token, id)).body.state, 'Standby', 'it stays in standby');
  const u = (await (await d.fetch('/v1/instances?name=brittle', { token })).json()).data.instances[0];
  assert.match(u.message, /the last wake by traffic failed: /);
  const st = await (await d.fetch(`/instances/${id}/auto-standby/status`, { token })).json();
  assert.equal(st.status, 'error');
  // put back: the next request wakes it, and the message is gone
  renameSync(state + '.away', state);
  assert.deepEqual(hostGet(8098, 'brittle.test'), { status: 200, body: 'fine\n' });
  assert.equal((await (await d.fetch('/v1/instances?name=brittle', { token })).json()).data.instances[0].message, undefined);
  assert.equal((await d.fetch('/ingresses/brittle', { method: 'DELETE', token })).status, 204);
  assert.equal((await d.fetch(`/instances/${id}`, { method: 'DELETE', token })).status, 204);
});

test('mediated egress: the guest gets the proxy in its env, plain HTTP and CONNECT go through it, the host and the subnet are refused; all refuses direct TCP (UDP works), http_https_only only 80 and 443; kept across standby, gone with the instance; bad input is 400', { timeout: 240000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const PROXY = `http://${GW}:3128`;
  const mk = (name, mode) => createInstance(d, token, {
    name, image, size: '256MB', vcpus: 1, network: { egress: { enabled: true, enforcement: mode ? { mode } : undefined } },
    // written whole, then renamed: Running means the program started, not that it wrote
    cmd: ['sh', '-c', 'env > /tmp/env.part && mv /tmp/env.part /tmp/env; exec sleep 3600'],
  });
  let c = await mk('mediated');
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  const env = await sh('mediated', 'i=0; while [ ! -f /tmp/env ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cat /tmp/env');
  for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) assert.match(env, new RegExp(`^${k}=${PROXY}$`, 'm'));
  // plain HTTP through the proxy; a CONNECT tunnel; destinations the proxy refuses
  assert.equal((await sh('mediated', `http_proxy=${PROXY} wget -q -O - http://192.0.2.2:8081/`)).trim(), 'from 192.0.2.1');
  const tunnel = await sh('mediated', `printf 'CONNECT 192.0.2.2:443 HTTP/1.1\\r\\nHost: 192.0.2.2:443\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${GW} 3128`);
  assert.match(tunnel, /^HTTP\/1\.1 200 Connection established/);
  assert.match(tunnel, /from 192\.0\.2\.1$/);
  for (const dest of [`http://${GW}:9099/`, 'http://127.0.0.1:9099/', 'http://10.123.0.99:8080/']) {
    const out = await sh('mediated', `printf 'GET ${dest} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | nc -w 5 ${GW} 3128 | head -1`);
    assert.match(out, /^HTTP\/1\.1 403/, dest);
  }
  // all: no direct TCP, to the outside or to the host's services; UDP still goes
  assert.equal(await guestGet('mediated', '192.0.2.2', 8081), 'unreachable');
  assert.equal(await guestGet('mediated', GW, 9099), 'unreachable');
  assert.match(await sh('mediated', 'nslookup pong.test 192.0.2.2 2>&1'), /1\.2\.3\.4/, 'UDP (DNS) goes');
  assert.match(ruleset(), new RegExp(`ip saddr ${c.body.network.ip.replace(/\./g, '\\.')} ct state new reject with tcp reset comment "egress through the proxy"`));
  // kept across a standby and a restore: the rules go with the TAP and come back with the new one,
  // and the guest's traffic goes at once (the bridge keeps its MAC while TAPs come and go, so the
  // guest's ARP entry for the gateway stays right)
  const bridgeMac = () => ip('-n', NS, '-br', 'link', 'show', BRIDGE).trim().split(/\s+/)[2];
  const macBefore = bridgeMac();
  const rule = new RegExp(`ip saddr ${c.body.network.ip.replace(/\./g, '\\.')} ct state new reject with tcp reset comment "egress through the proxy"`);
  let r = await d.fetch(`/instances/${id}/standby`, { method: 'POST', token, headers: json, body: '{}' });
  assert.equal(r.status, 200, await r.text());
  assert.doesNotMatch(ruleset(), rule, 'no rule while it has no TAP');
  r = await d.fetch(`/instances/${id}/restore`, { method: 'POST', token });
  assert.equal(r.status, 200, await r.text());
  assert.match(ruleset(), rule);
  assert.equal(bridgeMac(), macBefore, 'the bridge keeps its MAC');
  // (busybox's wget crashes with -T through a proxy: no timeout flag here)
  assert.equal((await sh('mediated', `http_proxy=${PROXY} wget -q -O - http://192.0.2.2:8081/`)).trim(), 'from 192.0.2.1', 'right after the restore');
  // a fork keeps the policy: its own address, its own rule, the proxy in its env
  r = await d.fetch(`/instances/${id}/fork`, { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'mediated-copy', from_running: true }) });
  const forkText = await r.text();
  assert.equal(r.status, 201, forkText);
  const fork = JSON.parse(forkText);
  await waitState(d, token, fork.id, ['Running']);
  assert.notEqual(fork.network.ip, c.body.network.ip);
  assert.match(ruleset(), new RegExp(`ip saddr ${fork.network.ip.replace(/\./g, '\\.')} ct state new reject with tcp reset comment "egress through the proxy"`));
  assert.match(await sh('mediated-copy', 'cat /tmp/env'), new RegExp(`^HTTPS_PROXY=${PROXY}$`, 'm'));
  assert.equal((await d.fetch(`/instances/${fork.id}`, { method: 'DELETE', token })).status, 204);
  // http_https_only, made through the official Hypeman SDK: 80 and 443 refused, another port direct
  const { default: Hypeman } = await import('../sdk/node_modules/@onkernel/hypeman/index.mjs');
  const hm = new Hypeman({ baseURL: d.url, apiKey: token, maxRetries: 0 });
  const made = await hm.instances.create({ name: 'webonly', image, size: '256MB', vcpus: 1, network: { egress: { enabled: true, enforcement: { mode: 'http_https_only' } } }, cmd: ['sh', '-c', 'exec sleep 3600'] });
  c = { body: made };
  await waitState(d, token, c.body.id, ['Running']);
  assert.equal(await guestGet('webonly', '192.0.2.2', 80), 'unreachable');
  assert.equal(await guestGet('webonly', '192.0.2.2', 443), 'unreachable');
  assert.equal(await guestGet('webonly', '192.0.2.2', 8081), 'from 192.0.2.1');
  // gone with the instances: no rule left
  assert.equal((await d.fetch(`/instances/${id}`, { method: 'DELETE', token })).status, 204);
  assert.equal((await d.fetch(`/instances/${c.body.id}`, { method: 'DELETE', token })).status, 204);
  assert.doesNotMatch(ruleset(), /egress through the proxy/);
  // bad input
  for (const [network, re] of [
    [{ egress: { enabled: true, enforcement: { mode: 'some' } } }, /mode` must be all or http_https_only/],
    [{ enabled: false, egress: { enabled: true } }, /`network.egress` mediates a network the instance does not have/],
    [{ egress: 'yes' }, /`network.egress` must be an object/],
  ]) {
    r = await d.fetch('/instances', { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'badegress', image, network }) });
    assert.equal(r.status, 400, JSON.stringify(network));
    assert.match((await r.json()).message, re);
  }
});

test('credential brokering: the guest holds a placeholder, the proxy sets the real header for the hosts named (verified upstream, exact or subdomains), other hosts and plain HTTP get none; rotation is live; a fork keeps placeholders and the policy; nothing leaks to the guest, the API or the log; bad input is 400', { timeout: 300000 }, async () => {
  const json = { 'content-type': 'application/json' };
  const half = [randomBytes(6).toString('hex'), randomBytes(6).toString('hex')];
  const SECRET = `sk-${half[0]}${half[1]}`;
  const H = (v) => createHash('sha256').update(v).digest('hex');
  const leakCheck = (name) => sh(name, `S="sk-${half[0]}"; S="$S"'${half[1]}'; for p in /*; do case $p in /proc|/sys|/dev) ;; *) grep -rlsF -- "$S" "$p";; esac; done; ` +
    `for f in /proc/[0-9]*/environ; do grep -lsF -- "$S" $f; done; grep -qsF -- "$S" /dev/vda && echo config-disk; echo checked`);
  const { default: Hypeman } = await import('../sdk/node_modules/@onkernel/hypeman/index.mjs');
  const hm = new Hypeman({ baseURL: d.url, apiKey: token, maxRetries: 0 });
  const made = await hm.instances.create({
    name: 'broker', image: curlImage, size: '256MB', vcpus: 1,
    env: { REAL_KEY: SECRET, TEAM: 'blue' },
    network: { egress: { enabled: true } },
    credentials: {
      API_KEY: { source: { env: 'REAL_KEY' }, inject: [{ hosts: ['api.test', '*.wild.test', 'bad.test'], as: { header: 'Authorization', format: 'Bearer ${value}' } }] },
    },
    cmd: ['sh', '-c', 'exec sleep 3600'],
  });
  const id = made.id;
  assert.equal(made.env.API_KEY, 'mock-API_KEY');
  assert.equal(made.env.REAL_KEY, undefined, 'the source key is not shown');
  assert.equal(made.env.TEAM, 'blue');
  await waitState(d, token, id, ['Running']);
  const secrets = join(dataDir, 'instances', id, 'secrets.json');
  assert.equal(statSync(secrets).mode & 0o777, 0o600);
  // the guest: a placeholder, the CA in its trust store (the RHEL bundle kept, the Debian one made)
  assert.equal((await sh('broker', 'echo "$API_KEY"')).trim(), 'mock-API_KEY');
  assert.match(await sh('broker', 'head -c 27 /etc/pki/tls/certs/ca-bundle.crt; grep -c "BEGIN CERT" /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/certs/ca-certificates.crt'), /^-----BEGIN CERTIFICATE-----\/etc\/pki\/tls\/certs\/ca-bundle\.crt:2\n\/etc\/ssl\/certs\/ca-certificates\.crt:1/);
  const get = async (name, url, extra = '') => {
    const out = await sh(name, `curl -sS --max-time 20 ${extra} ${url} 2>&1; echo`);
    try { return JSON.parse(out); } catch { return { error: out.trim() }; }
  };
  // a named host: decrypted, the guest's own Authorization replaced by the real one
  let r1 = await get('broker', 'https://api.test:8443/', '-H "Authorization: Bearer $API_KEY" -H "X-Team: $TEAM"');
  assert.deepEqual(r1, { host: 'api.test:8443', authorization: H(`Bearer ${SECRET}`), 'x-team': 'blue', body: 'GET' });
  assert.equal((await get('broker', 'https://a.wild.test:8443/')).authorization, H(`Bearer ${SECRET}`), 'a subdomain of *.wild.test');
  // not named (wild.test is not under *.wild.test): tunnelled untouched, so the guest sees the
  // upstream's own certificate (which it does not trust) and no header reaches the server
  for (const host of ['wild.test', 'other.test']) {
    assert.match((await get('broker', `https://${host}:8443/`)).error, /certificate/, host);
    assert.equal((await get('broker', `https://${host}:8443/`, '-k -H "Authorization: Bearer $API_KEY"')).authorization, H('Bearer mock-API_KEY'), host);
  }
  // plain HTTP never gets a value, even to a named host
  assert.equal((await get('broker', 'http://api.test:8084/')).authorization, null);
  // an upstream whose certificate does not name it: the CONNECT is refused, nothing is sent
  assert.match((await get('broker', 'https://bad.test:8443/')).error, /502/);
  // rotation while it runs: the next connection gets the new value; the guest's env is unchanged
  const ROTATED = `sk-rotated-${randomBytes(4).toString('hex')}`;
  let r = await d.fetch(`/instances/${id}`, { method: 'PATCH', token, headers: json, body: JSON.stringify({ env: { REAL_KEY: ROTATED } }) });
  let text = await r.text();
  assert.equal(r.status, 200, text);
  assert.ok(!text.includes(ROTATED) && !text.includes(SECRET), 'the PATCH answer holds no value');
  assert.equal((await get('broker', 'https://api.test:8443/')).authorization, H(`Bearer ${ROTATED}`));
  assert.equal((await sh('broker', 'echo "$API_KEY"')).trim(), 'mock-API_KEY');
  assert.equal(statSync(secrets).mode & 0o777, 0o600);
  // a snapshot keeps the values beside its disks (0600), never in the memory image
  r = await d.fetch(`/instances/${id}/snapshots`, { method: 'POST', token, headers: json, body: JSON.stringify({ kind: 'Standby', name: 'broker-snap' }) });
  text = await r.text();
  assert.equal(r.status, 201, text);
  const snap = JSON.parse(text);
  const snapDir = join(dataDir, 'snapshots', snap.id);
  assert.equal(statSync(join(snapDir, 'secrets.json')).mode & 0o777, 0o600);
  assert.match(readFileSync(join(snapDir, 'secrets.json'), 'utf8'), new RegExp(ROTATED));
  const mem = readFileSync(join(snapDir, existsSync(join(snapDir, 'memory.ram')) ? 'memory.ram' : 'memory.ram.zst'));
  assert.ok(mem.length > 1 << 20 && !mem.includes(SECRET) && !mem.includes(ROTATED), 'no value in the memory image');
  assert.equal((await d.fetch(`/snapshots/${snap.id}`, { method: 'DELETE', token })).status, 204);
  await waitState(d, token, id, ['Running']);
  r = await d.fetch(`/instances/${id}`, { method: 'PATCH', token, headers: json, body: JSON.stringify({ env: { API_KEY: 'x' } }) });
  assert.equal(r.status, 400);
  assert.match((await r.json()).message, /`env.API_KEY` is a credential's placeholder/);
  // a fork keeps the policy and the (rotated) value, with placeholders in its guest
  r = await d.fetch(`/instances/${id}/fork`, { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'broker-copy', from_running: true }) });
  text = await r.text();
  assert.equal(r.status, 201, text);
  const fork = JSON.parse(text);
  await waitState(d, token, fork.id, ['Running']);
  assert.equal(fork.env.API_KEY, 'mock-API_KEY');
  assert.equal(statSync(join(dataDir, 'instances', fork.id, 'secrets.json')).mode & 0o777, 0o600);
  assert.equal((await sh('broker-copy', 'echo "$API_KEY"')).trim(), 'mock-API_KEY');
  assert.equal((await get('broker-copy', 'https://api.test:8443/')).authorization, H(`Bearer ${ROTATED}`));
  // nothing of either value in the guests' files, processes or config disk; the API; the log
  for (const name of ['broker', 'broker-copy']) assert.equal((await leakCheck(name)).trim(), 'checked', name);
  for (const path of [`/instances/${id}`, `/instances/${fork.id}`, '/instances']) {
    const body = await (await d.fetch(path, { token })).text();
    assert.ok(!body.includes(SECRET) && !body.includes(ROTATED), path);
  }
  assert.ok(!d.log.includes(SECRET) && !d.log.includes(ROTATED), 'the daemon log holds no value');
  for (const i of [id, fork.id]) {
    const logs = ['hypeman.log', 'app.log', 'vmm.log'].map((f) => { try { return readFileSync(join(dataDir, 'instances', i, 'logs', f), 'utf8'); } catch { return ''; } }).join('');
    assert.ok(!logs.includes(SECRET) && !logs.includes(ROTATED), `instance logs of ${i}`);
    const cfg = readFileSync(join(dataDir, 'instances', i, 'config.img'));
    assert.ok(!cfg.includes(SECRET) && !cfg.includes(ROTATED), `config disk of ${i}`);
  }
  // standby and restore keep the policy (the rules come back with the TAP; the proxy reads the
  // policy from the store each time)
  r = await d.fetch(`/instances/${fork.id}/standby`, { method: 'POST', token, headers: json, body: '{}' });
  assert.equal(r.status, 200, await r.text());
  r = await d.fetch(`/instances/${fork.id}/restore`, { method: 'POST', token });
  assert.equal(r.status, 200, await r.text());
  assert.equal((await get('broker-copy', 'https://api.test:8443/')).authorization, H(`Bearer ${ROTATED}`));
  // an address names one instance: another guest that takes the (stopped) broker's address
  // is dropped at the bridge, so the proxy never sees it as the broker
  r = await d.fetch(`/instances/${id}/stop`, { method: 'POST', token });
  assert.equal(r.status, 200, await r.text());
  const spoofer = await createInstance(d, token, { name: 'spoofer', image: curlImage, size: '256MB', vcpus: 1, network: { egress: { enabled: true } }, cmd: ['sh', '-c', 'exec sleep 3600'] });
  assert.equal(spoofer.status, 201, JSON.stringify(spoofer.body));
  await waitState(d, token, spoofer.body.id, ['Running']);
  assert.match(ruleset.bridge(), new RegExp(`ip saddr != ${spoofer.body.network.ip.replace(/\./g, '\\.')} drop`));
  assert.equal((await get('spoofer', 'https://api.test:8443/', '-k')).authorization, null, 'from its own address: tunnelled, nothing added');
  const broker = made.network.ip;
  const out = await sh('spoofer', `ip addr flush dev eth0 && ip addr add ${broker}/16 dev eth0 && ip route add default via ${GW} && curl -sk --max-time 5 https://api.test:8443/ 2>&1; echo " rc=$?"`);
  assert.doesNotMatch(out, /sk-/, 'no value for a borrowed address');
  assert.match(out, / rc=(7|28)$/m, out);
  assert.equal((await d.fetch(`/instances/${spoofer.body.id}`, { method: 'DELETE', token })).status, 204);
  for (const i of [fork.id, id]) assert.equal((await d.fetch(`/instances/${i}`, { method: 'DELETE', token })).status, 204);
  assert.ok(!existsSync(secrets), 'the values go with the instance');
  for (const a of [made.network.ip, fork.network.ip, spoofer.body.network.ip]) assert.ok(!ruleset.bridge().includes(`!= ${a} `), `no guard left for ${a}`);
  // bad input, each named
  const cred = (over = {}) => ({ KEY: { source: { env: 'REAL' }, inject: [{ as: { header: 'Authorization', format: 'Bearer ${value}' } }] }, ...over });
  for (const [body, re] of [
    [{ env: { REAL: 'v' }, credentials: cred() }, /set network.egress.enabled to true/],
    [{ env: { REAL: 'v' }, network: { egress: { enabled: true } }, credentials: { KEY: { source: { env: 'REAL' }, inject: [{ as: { header: 'Authorization', format: 'Bearer' } }] } } }, /`credentials.KEY.inject\[0\].as.format` must contain \$\{value\}/],
    [{ env: { OTHER: 'v' }, network: { egress: { enabled: true } }, credentials: cred() }, /`credentials.KEY.source.env`: `env` has no key REAL/],
    [{ env: { REAL: 'v' }, network: { egress: { enabled: true } }, credentials: { KEY: { source: { env: 'REAL' }, inject: [{ hosts: ['*.'], as: { header: 'Authorization', format: '${value}' } }] } } }, /`credentials.KEY.inject\[0\].hosts\[0\]`: `\*\.` is not a host name/],
    [{ env: { REAL: 'v' }, network: { egress: { enabled: true } }, credentials: { KEY: { source: { env: 'REAL' }, inject: [] } } }, /`credentials.KEY.inject` must be an array of 1 to 8/],
    [{ env: { REAL: 'v' }, network: { egress: { enabled: true } }, credentials: { KEY: { source: { env: 'REAL', from: 'vault' }, inject: [{ as: { header: 'A', format: '${value}' } }] } } }, /`credentials.KEY.source.from` is not a field/],
  ]) {
    r = await d.fetch('/instances', { method: 'POST', token, headers: json, body: JSON.stringify({ name: 'badcred', image, ...body }) });
    const t = await r.text();
    assert.equal(r.status, 400, t);
    assert.match(JSON.parse(t).message, re);
    assert.ok(!t.includes('"v"'));
  }
});

test('a daemon stopped with an ingress connection open ends it and exits cleanly; the next one serves the route', { timeout: 60000 }, async () => {
  // A client that connected and sent half a request head, then waits.
  const holder = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e',
    "const s = require('net').connect(8088, '127.0.0.1', () => { s.write('GET / HTTP/1.1\\r\\nHost: web.test\\r\\n'); console.log('open'); });" +
    " s.on('data', () => {}); s.on('close', () => { console.log('closed'); process.exit(0); }); setTimeout(() => process.exit(3), 40000);"]);
  let out = '';
  holder.stdout.on('data', (b) => { out += b; });
  const holderExit = new Promise((res) => holder.on('exit', (code) => res(code)));
  for (let i = 0; i < 100 && !out.includes('open'); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(out, /open/);
  await new Promise((r) => setTimeout(r, 200)); // its connection thread is reading the head
  const st = await d.stop({ keepData: true });
  assert.equal(st.code, 0);
  assert.equal(await holderExit, 0, `the held connection was ended by the daemon: ${out}`);
  assert.match(out, /closed/);
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  assert.deepEqual(hostGet(8088, 'web.test'), { status: 200, body: 'web\n' });
});

test('kill -9 and restart: addresses, TAPs and rules intact, nothing duplicated; stray TAPs reclaimed', { timeout: 120000 }, async () => {
  const rulesBefore = ruleset();
  const tapsBefore = taps().sort();
  const pids = [vmmPid(d, web.id), vmmPid(d, peer.id)];
  await d.kill9();
  // What a crashed daemon could leave: a TAP of ours nobody owns; and one that is not ours.
  ip('-n', NS, 'tuntap', 'add', 'dev', 'hm-strayaaaaaa', 'mode', 'tap');
  ip('-n', NS, 'tuntap', 'add', 'dev', 'othertap0', 'mode', 'tap');
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  for (const inst of [web, peer]) {
    const { body } = await getInstance(d, token, inst.id);
    assert.equal(body.state, 'Running', JSON.stringify(body));
    assert.equal(body.network.ip, inst.network.ip);
  }
  assert.ok(pids.every(processAlive));
  assert.deepEqual(taps().sort(), tapsBefore);
  assert.match(ip('-n', NS, 'link', 'show'), /othertap0/);
  // The API port differs after a restart; the rest of the table is the same, once.
  const strip = (t) => t.replace(/tcp dport \d+/, 'tcp dport N');
  assert.equal(strip(ruleset()), strip(rulesBefore));
  assert.deepEqual(inNs(NS, 'nft', 'list', 'tables').split('\n').filter((l) => l.includes('hypeman')), ['table ip hypeman', 'table ip6 hypeman', 'table bridge hypeman']);
  assert.equal(fetchInNs(`http://${web.network.ip}:8080/`), 'web\n');
  // Ingresses come back with the daemon.
  assert.deepEqual(hostGet(8088, 'web.test'), { status: 200, body: 'web\n' });
  // A new instance never gets an address that is still held.
  const c = await createInstance(d, token, { name: 'third', image, size: '128MB', vcpus: 1, cmd: ['sleep', '100'] });
  assert.ok(![web.network.ip, peer.network.ip].includes(c.body.network.ip));
  // Delete everything: no TAP of ours is left.
  for (const id of [web.id, peer.id, c.body.id]) assert.equal((await d.fetch(`/instances/${id}`, { method: 'DELETE', token })).status, 204);
  assert.deepEqual(taps(), []);
  assert.ok(pids.every((p) => !processAlive(p)));
  // Its target gone, the route answers 502; deleting the ingress closes the port.
  assert.equal(hostGet(8088, 'web.test').status, 502);
  assert.equal((await d.fetch('/ingresses/site', { method: 'DELETE', token })).status, 204);
  assert.equal(hostGet(8088, 'web.test').error, 'ECONNREFUSED');
});

test('start-up checks: forwarding off, or a subnet that collides with a route, is refused with the reason', async () => {
  ip('-n', BAD, 'link', 'set', 'lo', 'up');
  inNs(BAD, 'sysctl', '-qw', 'net.ipv4.ip_forward=0');
  await assert.rejects(startDaemon({ netns: BAD, env: { ...NETENV } }), /IP forwarding is off/);
  inNs(BAD, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  ip('-n', BAD, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan1');
  ip('-n', BAD, 'addr', 'add', '10.123.7.1/24', 'dev', 'lan0');
  ip('-n', BAD, 'link', 'set', 'lan0', 'up');
  ip('-n', BAD, 'link', 'set', 'lan1', 'up');
  await assert.rejects(startDaemon({ netns: BAD, env: { ...NETENV } }), /collides with the host's route to 10\.123\.7\.0\/24 on lan0/);
  await assert.rejects(startDaemon({ netns: BAD, env: { ...NETENV, SUBNET_CIDR: '10.124.0.5/16' } }), /not a network address \(did you mean 10\.124\.0\.0\/16\?\)/);
  // Nothing was made in the refused namespace.
  assert.doesNotMatch(ip('-n', BAD, 'link', 'show'), new RegExp(BRIDGE));
});
