// Helpers for mediated egress and credential brokering (the network tests
// and bench/egress): a test CA and a server certificate of it, the names
// that certificate holds made to resolve in the daemon's namespace, HTTPS
// and HTTP servers in the "outside" namespace that answer with what they
// got, and an image layer with the host's curl and the libraries it links.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// The daemon's namespace ns and an "outside" one, out, joined by a veth pair:
// 192.0.2.1 on ns's side, 192.0.2.2 on out's, loopback up, ns forwarding.
export function outsidePair(ns, out) {
  const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  ip('-n', out, 'link', 'set', 'lo', 'up');
  ip('-n', ns, 'link', 'add', 'vh0', 'type', 'veth', 'peer', 'name', 'vo0', 'netns', out);
  ip('-n', ns, 'addr', 'add', '192.0.2.1/24', 'dev', 'vh0');
  ip('-n', out, 'addr', 'add', '192.0.2.2/24', 'dev', 'vo0');
  ip('-n', ns, 'link', 'set', 'vh0', 'up');
  ip('-n', out, 'link', 'set', 'vo0', 'up');
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
}

// The names the test certificate holds; bad.test resolves too but is not in it.
export const TLS_NAMES = ['api.test', 'a.wild.test', 'wild.test', 'other.test'];

// In dir: ca.pem (+key), srv.pem/srv.key for TLS_NAMES signed by it, and
// other.pem, an unrelated CA (an image's own bundle). In the daemon's
// namespace ns, the names resolve to addr (/etc/netns/<ns>/hosts, which
// `ip netns exec` mounts over /etc/hosts). Undo with removeTestNames(ns).
export function makeTestCa(dir, ns, addr = '192.0.2.2') {
  const o = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  o('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=hypeman egress test CA');
  o('req', ...ec, '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=api.test');
  writeFileSync(join(dir, 'ext.cnf'), `subjectAltName=${TLS_NAMES.map((n) => `DNS:${n}`).join(',')}\n`);
  o('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '2', '-extfile', 'ext.cnf');
  o('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=an image CA');
  mkdirSync(`/etc/netns/${ns}`, { recursive: true });
  writeFileSync(`/etc/netns/${ns}/hosts`, `127.0.0.1 localhost\n${addr} ${TLS_NAMES.join(' ')} bad.test\n`);
}
export function removeTestNames(ns) {
  rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
}

// In namespace ns: HTTPS on addr:8443 (dir's srv certificate) and HTTP on
// addr:8084, answering JSON {host, authorization, x-team, body}, the
// Authorization header as its SHA-256 (so no value ever reaches a guest,
// even in an answer). The process goes into `procs` (for the caller to kill).
export async function echoServers(ns, dir, procs, addr = '192.0.2.2') {
  const code = `const echo = (q, s) => s.end(JSON.stringify({ host: q.headers.host, authorization: q.headers.authorization ? require('crypto').createHash('sha256').update(q.headers.authorization).digest('hex') : null, 'x-team': q.headers['x-team'] ?? null, body: q.method }));
    require('http').createServer(echo).listen(8084, '${addr}');
    require('https').createServer({ key: require('fs').readFileSync('${dir}/srv.key'), cert: require('fs').readFileSync('${dir}/srv.pem') }, echo).listen(8443, '${addr}', () => console.log('ready'));`;
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(p);
  await new Promise((res, rej) => { p.stdout.once('data', res); p.once('exit', (c) => rej(new Error(`echo servers exited ${c}`))); });
}

// A layer (over busyboxRoot) with the host's curl and the libraries it links,
// a trust bundle of its own at the RHEL path (dir's other.pem) and none at
// the Debian one, plus `extra` entries.
export function curlLayer(dir, extra = []) {
  const files = new Map();
  for (const line of execFileSync('ldd', ['/usr/bin/curl'], { encoding: 'utf8' }).split('\n')) {
    const m = line.match(/(\/\S+) \(0x/);
    if (m) files.set(m[1], readFileSync(m[1]));
  }
  const dirs = new Set(['usr', 'usr/bin', 'etc/pki', 'etc/pki/tls', 'etc/pki/tls/certs']);
  for (const f of files.keys()) for (let d = f.slice(1, f.lastIndexOf('/')); d; d = d.includes('/') ? d.slice(0, d.lastIndexOf('/')) : '') dirs.add(d);
  const entries = [...dirs].sort().map((d) => ({ path: d, type: 'dir' }));
  for (const [f, data] of files) entries.push({ path: f.slice(1), data, mode: 0o755 });
  entries.push({ path: 'usr/bin/curl', data: readFileSync('/usr/bin/curl'), mode: 0o755 });
  entries.push({ path: 'etc/pki/tls/certs/ca-bundle.crt', data: readFileSync(join(dir, 'other.pem')) });
  return [...entries, ...extra];
}
