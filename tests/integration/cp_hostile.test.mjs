// `hypeman cp INSTANCE:PATH LOCAL` against a hostile guest. A root process in
// a guest can write anything on the agent channel, and the daemon relays the
// copy stream as the guest sends it, so the CLI must treat every header as
// hostile. The guest side here is a FAKE: a WebSocket server of this test in
// the daemon's place that answers /instances/evil/cp with exactly the stream
// such a guest would send (a symlink to a host folder, then a file "under"
// it; paths with "..", absolute ones; a file longer than it declared). What
// is checked is the host's files: nothing lands outside the destination.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, mkdirSync, readFileSync, readlinkSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../harness/daemon.mjs';

// One unmasked server frame: FIN + opcode, then the length.
function frame(opcode, payload) {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const n = body.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n])
    : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 255])
      : (() => { const b = Buffer.alloc(10); b[0] = 0x80 | opcode; b[1] = 127; b.writeBigUInt64BE(BigInt(n), 2); return b; })();
  return Buffer.concat([head, body]);
}
const text = (o) => frame(1, JSON.stringify(o));
const bin = (s) => frame(2, Buffer.from(s));

let server, url, work, stream = [];
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'hm-cp-hostile-'));
  server = http.createServer((req, res) => { res.writeHead(404).end('{}'); });
  server.on('upgrade', (req, sock) => {
    const accept = createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    // The client's request comes first; whatever it asked, the "guest" sends its stream.
    sock.once('data', () => {
      for (const f of stream) sock.write(f);
      sock.end(frame(8, Buffer.from([0x03, 0xe8])));
    });
    sock.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${server.address().port}`;
});
after(() => {
  server?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const cp = (src, dst) => runCli(['cp', src, dst], { env: { HYPEMAN_BASE_URL: url, HYPEMAN_API_KEY: 'fake' } });
const hdr = (path, extra = {}) => text({ type: 'header', path, mode: 0o644, mtime: 1700000000, uid: 0, gid: 0, is_dir: false, is_symlink: false, ...extra });
const end = (final = false) => text({ type: 'end', final });

// Everything under dir, as relative paths (links not followed).
function tree(dir, pre = '') {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    const st = lstatSync(p);
    return st.isDirectory() ? [`${pre}${n}/`, ...tree(p, `${pre}${n}/`)] : [`${pre}${n}`];
  }).sort();
}

test('a symlink to a host folder, then a file under it: the link is made, never followed', async () => {
  const outside = join(work, 'outside');
  mkdirSync(outside);
  const dest = join(work, 'dest');
  mkdirSync(dest);
  stream = [
    hdr('evil', { is_dir: true, mode: 0o755 }), end(),
    hdr('evil/link', { is_symlink: true, link_target: outside }), end(),
    hdr('evil/link/pwned', { size: 5 }), bin('owned'), end(),
    hdr('evil/ok.txt', { size: 5 }), bin('hello'), end(true),
  ];
  const r = await cp('evil:/evil', dest);
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(readdirSync(outside), [], 'nothing was written outside the destination');
  assert.equal(readlinkSync(join(dest, 'evil/link')), outside);
  assert.equal(readFileSync(join(dest, 'evil/ok.txt'), 'utf8'), 'hello');
  assert.match(r.stderr, /evil\/link\/pwned: skipped: a symlink or a file stands where its directory should be/);
  // The same stream to a new name (the destination's name replaces the first component).
  const r2 = await cp('evil:/evil', join(work, 'renamed'));
  assert.equal(r2.code, 1, r2.stderr);
  assert.deepEqual(readdirSync(outside), []);
  assert.deepEqual(tree(join(work, 'renamed')), ['link', 'ok.txt']);
});

test('"..", absolute, "." and empty components are refused; only the good entries land', async () => {
  const dest = mkdtempSync(join(work, 'dots-'));
  stream = [
    hdr('d', { is_dir: true }), end(),
    hdr('../escaped', { size: 1 }), bin('x'), end(),
    hdr('d/../../escaped2', { size: 1 }), bin('x'), end(),
    hdr('/etc/escaped3', { size: 1 }), bin('x'), end(),
    hdr('d/./x', { size: 1 }), bin('x'), end(),
    hdr('d//x', { size: 1 }), bin('x'), end(),
    hdr('d/' + 'a/'.repeat(300) + 'deep', { size: 1 }), bin('x'), end(),
    hdr('d/good', { size: 4 }), bin('good'), end(true),
  ];
  const r = await cp('evil:/d', dest);
  assert.equal(r.code, 1);
  assert.equal((r.stderr.match(/outside the destination/g) || []).length, 6, r.stderr);
  assert.deepEqual(tree(dest), ['d/', 'd/good']);
  assert.ok(!existsSync(join(work, 'escaped')) && !existsSync(join(dirname(work), 'escaped2')));
});

test('a file that sends more or fewer bytes than it declared is not kept; the next one is', async () => {
  const dest = mkdtempSync(join(work, 'size-'));
  stream = [
    hdr('d', { is_dir: true }), end(),
    hdr('d/long', { size: 3 }), bin('0123456789'), end(),
    hdr('d/short', { size: 30 }), bin('0123'), end(),
    hdr('d/fine', { size: 2 }), bin('ok'), end(true),
  ];
  const r = await cp('evil:/d', dest);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /d\/long: skipped: the stream sent more bytes than the file's declared size/);
  assert.match(r.stderr, /d\/short: skipped: the stream ended the file before its declared size/);
  assert.deepEqual(tree(dest), ['d/', 'd/fine'], 'no temporary files left either');
});

test('a symlink already in the destination is not followed either', async () => {
  const outside = mkdtempSync(join(work, 'outside2-'));
  const dest = mkdtempSync(join(work, 'pre-'));
  symlinkSync(outside, join(dest, 'd'));
  stream = [hdr('d', { is_dir: true }), end(), hdr('d/f', { size: 1 }), bin('x'), end(true)];
  const r = await cp('evil:/d', dest);
  assert.equal(r.code, 1);
  assert.deepEqual(readdirSync(outside), []);
  assert.match(r.stderr, /d: skipped: something else is there/);
});

function dirname(p) { return p.slice(0, p.lastIndexOf('/')) || '/'; }
