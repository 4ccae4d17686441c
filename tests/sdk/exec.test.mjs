// GET /instances/{id}/exec and /cp, the WebSocket protocols upstream Hypeman
// speaks, driven with a real client (the `ws` package). exec: exit codes,
// stdin piping, a TTY, a command that does not exist, a timeout, bad
// requests, the errors before the upgrade. cp: files and trees both ways,
// modes and times, a client that leaves mid-upload, bad requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startDaemon } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { createInstance, waitState } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, token, image, id;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  token = d.token();
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  const { img } = await waitImage(d, token, image);
  assert.equal(img.status, 'ready', img.error);
  const c = await createInstance(d, token, {
    name: 'exec-target', image, size: '256MB', vcpus: 1, env: { FROM_SPEC: 'spec' },
    cmd: ['sleep', '100000'],
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  id = c.body.id;
  await waitState(d, token, id, ['Running']);
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

function wsUrl(target = id) {
  return `${d.url.replace(/^http/, 'ws')}/instances/${target}/exec`;
}

// Run one exec session: send `req`, then each of `input` (Buffer: binary
// stdin; object: a text control message), with `gapMs` between them.
// Resolves {out, exitCode, texts, closeCode}.
function execWs(req, { input = [], gapMs = 0, target = id, onOpen, auth = true } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(target), { headers: auth ? { authorization: `Bearer ${token}` } : {} });
    const chunks = [];
    const texts = [];
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (b) => (body += b));
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, body: JSON.parse(body || '{}') })));
    });
    ws.on('error', reject);
    ws.on('open', async () => {
      ws.send(typeof req === 'string' ? req : JSON.stringify(req));
      if (onOpen) onOpen(ws);
      for (const m of input) {
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
        if (Buffer.isBuffer(m)) ws.send(m, { binary: true });
        else ws.send(JSON.stringify(m));
      }
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) chunks.push(Buffer.from(data));
      else texts.push(JSON.parse(data.toString()));
    });
    ws.on('close', (code) => {
      const exit = texts.find((t) => 'exitCode' in t);
      resolve({ out: Buffer.concat(chunks).toString(), exitCode: exit?.exitCode, texts, closeCode: code });
    });
  });
}

test('exit codes: 0, 3, and 137 for a command killed by SIGKILL', async () => {
  const ok = await execWs({ command: ['echo', 'hi'] });
  assert.equal(ok.out, 'hi\n');
  assert.equal(ok.exitCode, 0);
  assert.equal(ok.closeCode, 1000);
  const three = await execWs({ command: ['sh', '-c', 'echo out; echo err >&2; exit 3'] });
  assert.equal(three.exitCode, 3);
  assert.match(three.out, /out\n/);
  assert.match(three.out, /err\n/); // stderr shares the stream, as upstream
  const killed = await execWs({ command: ['sh', '-c', 'kill -9 $$'] });
  assert.equal(killed.exitCode, 137);
});

test('env over the instance env, cwd, and the instance env is inherited', async () => {
  const r = await execWs({ command: ['sh', '-c', 'echo "$FROM_SPEC $MINE $(pwd)"'], env: { MINE: 'mine' }, cwd: '/etc' });
  assert.equal(r.out, 'spec mine /etc\n');
  assert.equal(r.exitCode, 0);
});

test('stdin is piped: cat echoes binary-safe bytes and ends at stdin_close', async () => {
  const bytes = Buffer.alloc(200000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 0xff;
  const r = await execWs({ command: ['sh', '-c', 'cat | md5sum'] }, {
    input: [bytes.subarray(0, 100000), bytes.subarray(100000), { type: 'stdin_close' }],
  });
  const { createHash } = await import('node:crypto');
  assert.equal(r.out.split(' ')[0], createHash('md5').update(bytes).digest('hex'));
  assert.equal(r.exitCode, 0);
});

test('tty: a pty with the requested size, resize reaches it, input is echoed', async () => {
  const r = await execWs({ command: ['sh', '-c', 'tty; stty size; read line; stty size; echo "got $line"'], tty: true, rows: 30, cols: 100 }, {
    gapMs: 300,
    input: [{ type: 'resize', rows: 40, cols: 120 }, Buffer.from('abc\r')],
  });
  assert.equal(r.exitCode, 0, r.out);
  assert.match(r.out, /\/dev\/pts\/\d+\r\n/);
  assert.match(r.out, /30 100\r\n/);
  assert.match(r.out, /40 120\r\n/);
  assert.match(r.out, /got abc\r\n/);
});

test('a command that does not exist is 127 with an Error line', async () => {
  const r = await execWs({ command: ['/no/such/program'] });
  assert.equal(r.exitCode, 127);
  assert.match(r.out, /^Error: .*no\/such\/program.*\r\n$/);
});

test('timeout kills the command (137); closing the socket kills it too', async () => {
  const t0 = Date.now();
  const r = await execWs({ command: ['sleep', '60'], timeout: 1 });
  assert.equal(r.exitCode, 137);
  assert.ok(Date.now() - t0 < 30000);
  // A client that goes away mid-command: the guest process is gone afterwards.
  await new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(), { headers: { authorization: `Bearer ${token}` } });
    ws.on('error', reject);
    ws.on('open', () => {
      ws.send(JSON.stringify({ command: ['sh', '-c', 'echo started; exec sleep 4321'] }));
    });
    ws.on('message', () => ws.terminate());
    ws.on('close', resolve);
  });
  let left = '';
  for (let i = 0; i < 50; i++) {
    left = (await execWs({ command: ['sh', '-c', 'ps -o args | grep "sleep 4321" | grep -v grep || true'] })).out;
    if (left === '') break;
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.equal(left, '');
});

test('bad first messages are answered {"error"} and closed with 1008', async () => {
  for (const req of ['not json', { command: 'ls' }, { command: [''] }, { command: ['ls'], cwd: 'relative' }, { command: ['ls'], tty: 'yes' }, { command: ['ls'], timeout: -1 }]) {
    const r = await execWs(req);
    assert.equal(r.closeCode, 1008, JSON.stringify(req));
    assert.equal(r.exitCode, undefined);
    assert.ok(r.texts[0]?.error, JSON.stringify(r.texts));
  }
});

test('before the upgrade: 404 for an unknown instance, 400 without Upgrade, 409 when not running, 401 without a token', async () => {
  await assert.rejects(execWs({ command: ['ls'] }, { target: 'no-such-instance' }), (e) => e.status === 404 && e.body.code === 'not_found');
  const plain = await d.fetch(`/instances/${id}/exec`, { token });
  assert.equal(plain.status, 400);
  assert.equal((await plain.json()).code, 'bad_request');
  await assert.rejects(execWs({ command: ['ls'] }, { auth: false }), (e) => e.status === 401);
  const c = await createInstance(d, token, { name: 'exec-done', image, size: '256MB', vcpus: 1, cmd: ['true'] });
  await waitState(d, token, c.body.id, ['Stopped']);
  await assert.rejects(execWs({ command: ['ls'] }, { target: c.body.id }), (e) => e.status === 409 && e.body.code === 'invalid_state' && /current state: Stopped/.test(e.body.message));
});

// One cp session: send `req`, then `input` (Buffers as binary, objects as
// text). Resolves {texts, data (Buffer of all binary frames), closeCode}.
function cpWs(req, { input = [], target = id, abortAfter, pauseMs } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${d.url.replace(/^http/, 'ws')}/instances/${target}/cp`, { headers: { authorization: `Bearer ${token}` } });
    const texts = [];
    const chunks = [];
    const order = [];
    ws.on('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    ws.on('error', reject);
    ws.on('open', async () => {
      ws.send(JSON.stringify(req));
      for (const [i, m] of input.entries()) {
        if (abortAfter !== undefined && i === abortAfter) {
          await new Promise((r) => setTimeout(r, 200));
          ws.terminate();
          return;
        }
        if (Buffer.isBuffer(m)) ws.send(m, { binary: true });
        else ws.send(JSON.stringify(m));
      }
    });
    let paused = false;
    ws.on('message', (data, isBinary) => {
      if (pauseMs && isBinary && !paused) { // a slow client: stop reading the socket for a while
        paused = true;
        ws.pause();
        setTimeout(() => ws.resume(), pauseMs);
      }
      if (isBinary) { chunks.push(Buffer.from(data)); order.push({ type: 'data', len: data.length }); } else { const t = JSON.parse(data.toString()); texts.push(t); order.push(t); }
      // As the SDK does: the client closes once the final end has come.
      if (!isBinary && texts.at(-1)?.type === 'end' && texts.at(-1)?.final) ws.close();
    });
    ws.on('close', (code) => resolve({ texts, order, data: Buffer.concat(chunks), closeCode: code }));
  });
}

async function sh(cmd) {
  const r = await execWs({ command: ['sh', '-c', cmd] });
  assert.equal(r.exitCode, 0, `${cmd}: ${r.out}`);
  return r.out;
}

test('cp to: a binary file in chunks with mode and mtime; into a directory by basename; a directory', async () => {
  const bytes = Buffer.alloc(300000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 13 + 7) & 0xff;
  const r = await cpWs({ direction: 'to', guest_path: '/tmp/up/deep/file.bin', mode: 0o640, mtime: 1700000000 }, {
    input: [bytes.subarray(0, 100000), bytes.subarray(100000, 250000), bytes.subarray(250000), { type: 'end' }],
  });
  assert.deepEqual(r.texts, [{ type: 'result', success: true, error: '', bytes_written: 300000 }]);
  assert.equal(r.closeCode, 1000);
  const { createHash } = await import('node:crypto');
  assert.equal((await sh('md5sum /tmp/up/deep/file.bin')).split(' ')[0], createHash('md5').update(bytes).digest('hex'));
  assert.equal(await sh('stat -c "%a %Y" /tmp/up/deep/file.bin'), '640 1700000000\n');
  const into = await cpWs({ direction: 'to', guest_path: '/tmp/up', src_basename: 'named.txt' }, { input: [Buffer.from('named\n'), { type: 'end' }] });
  assert.equal(into.texts[0].success, true, JSON.stringify(into.texts));
  assert.equal(await sh('cat /tmp/up/named.txt; stat -c %a /tmp/up/named.txt'), 'named\n644\n');
  const dir = await cpWs({ direction: 'to', guest_path: '/tmp/up/newdir', is_dir: true, mode: 0o750 });
  assert.equal(dir.texts[0].success, true, JSON.stringify(dir.texts));
  assert.equal(await sh('stat -c "%F %a" /tmp/up/newdir'), 'directory 750\n');
});

test('cp to: failures answer success:false and leave no file; a client gone mid-upload leaves the target as it was', async () => {
  await sh('mkdir -p /tmp/keep && echo old > /tmp/keep/t.txt && echo plain > /tmp/keep/f');
  const under = await cpWs({ direction: 'to', guest_path: '/tmp/keep/f/child' }, { input: [Buffer.from('x'), { type: 'end' }] });
  assert.equal(under.texts.at(-1).success, false);
  assert.match(under.texts.at(-1).error, /\S/);
  await cpWs({ direction: 'to', guest_path: '/tmp/keep/t.txt' }, { input: [Buffer.from('new new new'), Buffer.from('more'), { type: 'end' }], abortAfter: 1 });
  let listing = '';
  for (let i = 0; i < 20; i++) { // the abort reaches the guest asynchronously
    listing = await sh('cat /tmp/keep/t.txt; ls -A /tmp/keep');
    if (listing === 'old\nf\nt.txt\n') break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(listing, 'old\nf\nt.txt\n');
});

test('cp from: a file, then a tree with a nested dir, an empty file and a symlink', async () => {
  const f = await cpWs({ direction: 'from', guest_path: '/tmp/up/deep/file.bin' });
  assert.equal(f.texts[0].type, 'header');
  assert.equal(f.texts[0].path, 'file.bin');
  assert.equal(f.texts[0].size, 300000);
  assert.equal(f.texts[0].mode & 0o777, 0o640);
  assert.equal(f.texts[0].mtime, 1700000000);
  assert.equal(f.data.length, 300000);
  // One file: its end is the last, and final (upstream's framing).
  assert.deepEqual(f.texts.slice(1), [{ type: 'end', final: true }]);
  await sh('rm -rf /tmp/tree && mkdir -p /tmp/tree/a/b && echo hello > /tmp/tree/a/b/f && : > /tmp/tree/empty && ln -s a/b/f /tmp/tree/link');
  const t = await cpWs({ direction: 'from', guest_path: '/tmp/tree' });
  const headers = t.texts.filter((x) => x.type === 'header');
  const paths = headers.map((h) => h.path);
  assert.deepEqual([...paths].sort(), ['tree', 'tree/a', 'tree/a/b', 'tree/a/b/f', 'tree/empty', 'tree/link']);
  for (const p of paths) {
    const parent = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : null;
    if (parent) assert.ok(paths.indexOf(parent) < paths.indexOf(p), `${parent} before ${p}`);
  }
  const link = headers.find((h) => h.path === 'tree/link');
  assert.equal(link.is_symlink, true);
  assert.equal(link.link_target, 'a/b/f');
  assert.equal(headers.find((h) => h.path === 'tree/a').is_dir, true);
  assert.equal(t.data.toString(), 'hello\n');
  assert.deepEqual(t.texts.at(-1), { type: 'end', final: true });
  // One end per file (two), the last one final when a file comes last, else a lone final end.
  const ends = t.texts.filter((x) => x.type === 'end');
  const last = headers.at(-1);
  assert.equal(ends.length, !last.is_dir && !last.is_symlink ? 2 : 3, JSON.stringify(t.texts));
  assert.equal(ends.filter((x) => x.final).length, 1);
});

test('cp from: 24 MiB to a client that stops reading for 3 s arrives whole (backpressure end to end)', { timeout: 120000 }, async () => {
  await sh('dd if=/dev/urandom of=/tmp/big bs=1M count=24 2>/dev/null');
  const sum = (await sh('md5sum /tmp/big')).split(' ')[0];
  const r = await cpWs({ direction: 'from', guest_path: '/tmp/big' }, { pauseMs: 3000 });
  assert.equal(r.data.length, 24 << 20);
  const { createHash } = await import('node:crypto');
  assert.equal(createHash('md5').update(r.data).digest('hex'), sum);
  assert.deepEqual(r.texts.at(-1), { type: 'end', final: true });
  await sh('rm /tmp/big');
});

test('cp: a missing path, a bad request, and a stopped instance', async () => {
  const m = await cpWs({ direction: 'from', guest_path: '/no/such/thing' });
  assert.equal(m.texts[0].type, 'error');
  assert.match(m.texts[0].message, /no such file/i);
  for (const req of [{ direction: 'sideways', guest_path: '/x' }, { direction: 'to', guest_path: 'relative' }, { direction: 'to', guest_path: '/x', mode: 99999 }, { direction: 'to', guest_path: '/x', src_basename: '../up' }]) {
    const r = await cpWs(req);
    assert.equal(r.closeCode, 1008, JSON.stringify(req));
    assert.equal(r.texts[0].type, 'error');
  }
  const stopped = (await (await d.fetch('/instances/exec-done', { token })).json()).id;
  await assert.rejects(cpWs({ direction: 'from', guest_path: '/' }, { target: stopped }), (e) => e.status === 409);
});
