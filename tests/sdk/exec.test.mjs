// GET /instances/{id}/exec, the WebSocket protocol upstream Hypeman speaks,
// driven with a real client (the `ws` package): exit codes, stdin piping, a
// TTY, a command that does not exist, a timeout, bad requests, and the
// errors before the upgrade.
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
