// The guest contract (docs/guest.md) end to end: real QEMU microVMs (TCG)
// booting the fetched guest kernel with an initrd around the real
// hypeman-init, a busybox root disk made with mkfs.erofs, an ext4 overlay
// disk and a config disk written here by the contract's rules. Checks what
// the program sees (argv, env, user, workdir, hostname), the exit record for
// each way a program ends, overlay persistence across boots, a broken config
// disk, the agent channel (boot/started/exit, ping, signal, stop, stat, exec
// sessions with pipes and with a pty, stdin, resize, kill, backpressure on
// large output, copying files in and out with cp) and the ACPI power button. Every boot has a hard timeout and
// its QEMU is killed by PID; at most two boots run at once.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import {
  mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync, existsSync, symlinkSync,
  copyFileSync, chmodSync, openSync, readSync, closeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import net from 'node:net';
import { ROOT, bin } from '../harness/daemon.mjs';

const KERNEL_DIR = process.env.HYPEMAN_KERNEL_DIR || join(ROOT, '.data/system/kernel/current');
const INIT_BIN = process.env.HYPEMAN_INIT || bin('hypeman-init');
const BOOT_TIMEOUT_MS = 60000;
const MAX_PARALLEL = 2;
const CFG_SIZE = 1 << 20;
const EXIT_SIZE = 4096;

const missing = [join(KERNEL_DIR, 'vmlinux'), join(KERNEL_DIR, 'load.order'), INIT_BIN].filter((p) => !existsSync(p));
const skip = missing.length ? `missing ${missing.join(', ')} (run make setup and make bins san)` : false;

// ---- boot artifacts ----------------------------------------------------------------------

// A newc cpio: entries {name, type: 'dir'|'chr'|'file', mode, data, major, minor}.
function newc(entries) {
  const out = [];
  let ino = 1;
  const pad = (n) => Buffer.alloc((4 - (n % 4)) % 4);
  const header = (name, mode, size, nlink, rmajor = 0, rminor = 0) => {
    const fields = [ino++, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, Buffer.byteLength(name) + 1, 0];
    const h = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}${name}\0`);
    out.push(h, pad(h.length));
  };
  for (const e of entries) {
    if (e.type === 'dir') header(e.name, 0o040000 | 0o755, 0, 2);
    else if (e.type === 'chr') header(e.name, 0o020000 | 0o600, 0, 1, e.major, e.minor);
    else {
      header(e.name, 0o100000 | e.mode, e.data.length, 1);
      out.push(e.data, pad(e.data.length));
    }
  }
  header('TRAILER!!!', 0, 0, 1);
  return Buffer.concat(out);
}

// The initrd of docs/guest.md for a microvm (virtio-mmio: no virtio_pci modules).
function buildInitrd(out) {
  const order = readFileSync(join(KERNEL_DIR, 'load.order'), 'utf8').split('\n')
    .filter((m) => m && !m.startsWith('virtio_pci'));
  const entries = ['dev', 'proc', 'sys', 'mnt', 'newroot', 'lib', 'lib/modules'].map((name) => ({ name, type: 'dir' }));
  entries.push({ name: 'dev/console', type: 'chr', major: 5, minor: 1 });
  entries.push({ name: 'init', type: 'file', mode: 0o755, data: readFileSync(INIT_BIN) });
  for (const m of order) entries.push({ name: `lib/modules/${m}`, type: 'file', mode: 0o644, data: readFileSync(join(KERNEL_DIR, 'modules', m)) });
  entries.push({ name: 'lib/modules/load.order', type: 'file', mode: 0o644, data: Buffer.from(order.map((m) => `${m}\n`).join('')) });
  writeFileSync(out, newc(entries));
}

// A busybox root: applets, /etc/passwd with root and app (1000), a file that is not executable.
function buildRootDisk(dir, disk) {
  for (const d of ['bin', 'etc', 'dev', 'proc', 'sys', 'tmp', 'root', 'home/app']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync('/usr/bin/busybox', join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  const applets = ['sh', 'echo', 'sleep', 'cat', 'env', 'pwd', 'id', 'kill', 'ls', 'mkdir', 'touch', 'sort',
    'hostname', 'true', 'false', 'sync', 'ps', 'grep', 'mount', 'head', 'tr', 'tty', 'stty',
    'md5sum', 'stat', 'dd', 'ln', 'rm', 'mkfifo', 'find', 'printf'];
  for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n');
  writeFileSync(join(dir, 'notexec'), '#!/bin/sh\necho never\n');
  mkdirSync(join(dir, 'srv/data'), { recursive: true });
  writeFileSync(join(dir, 'srv/data/file.txt'), 'twelve bytes');
  chmodSync(join(dir, 'srv/data/file.txt'), 0o640);
  symlinkSync('data/file.txt', join(dir, 'srv/link'));
  chmodSync(join(dir, 'notexec'), 0o644);
  chmodSync(join(dir, 'tmp'), 0o1777);
  execFileSync('chown', ['1000:1000', join(dir, 'home/app')]);
  execFileSync('mkfs.erofs', ['--quiet', disk, dir]);
}

function overlayDisk(path) {
  execFileSync('truncate', ['-s', '64M', path]);
  execFileSync('mkfs.ext4', ['-q', '-F', path]);
}

// The config disk of docs/guest.md.
function configDisk(path, cfg) {
  const parts = [Buffer.from('HYPEMAN-CONFIG 1\n')];
  const put = (key, value) => {
    const v = Buffer.from(value);
    parts.push(Buffer.from(`${key} ${v.length}:`), v, Buffer.from('\n'));
  };
  for (const a of cfg.argv) put('arg', a);
  for (const e of cfg.env || []) put('env', e);
  for (const d of cfg.dns || []) put('dns', d);
  for (const k of ['workdir', 'user', 'hostname', 'root', 'rootfs', 'overlay', 'net_ip', 'net_gw', 'net_mac', 'agent']) {
    if (cfg[k] != null) put(k, cfg[k]);
  }
  parts.push(Buffer.from('end 0:\n'));
  const disk = Buffer.alloc(CFG_SIZE);
  Buffer.concat(parts).copy(disk);
  writeFileSync(path, disk);
}

// The exit record at the end of a config disk: {code, message}, or null when empty.
function readExit(path) {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(EXIT_SIZE);
  readSync(fd, b, 0, EXIT_SIZE, CFG_SIZE - EXIT_SIZE);
  closeSync(fd);
  if (b[0] === 0) return null;
  assert.equal(b.subarray(0, 15).toString(), 'HYPEMAN-EXIT 1\n', 'exit record magic');
  const rec = {};
  let p = 15;
  for (;;) {
    const sp = b.indexOf(0x20, p);
    const colon = b.indexOf(0x3a, sp);
    const key = b.subarray(p, sp).toString();
    const len = Number(b.subarray(sp + 1, colon).toString());
    if (key === 'end') break;
    rec[key] = b.subarray(colon + 1, colon + 1 + len).toString();
    assert.equal(b[colon + 1 + len], 0x0a, `record ${key} ends with a newline`);
    p = colon + 2 + len;
  }
  return { code: Number(rec.code), message: rec.message };
}

function tscKhz() {
  const m = readFileSync('/proc/cpuinfo', 'utf8').match(/^cpu MHz\s*:\s*([\d.]+)/m);
  return m ? Math.round(Number(m[1]) * 1000) : 0;
}

// ---- booting -----------------------------------------------------------------------------

let work, rootDisk, initrd;
const running = new Set(); // QEMU processes still alive, killed in after()
let slots = MAX_PARALLEL;
const waiters = [];
async function acquire() {
  if (slots > 0) { slots--; return; }
  await new Promise((res) => waiters.push(res));
}
function release() {
  const next = waiters.shift();
  if (next) next(); else slots++;
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

// Connect to a unix socket QEMU serves, retrying until it exists.
async function connectUnix(path, deadline) {
  for (;;) {
    try {
      return await new Promise((res, rej) => {
        const c = net.connect(path);
        c.once('connect', () => res(c));
        c.once('error', rej);
      });
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`cannot connect to ${path}: ${e.message}`);
      await sleep(5);
    }
  }
}

// A line-oriented JSON reader over a socket.
function jsonLines(sock, onMessage) {
  let buf = '';
  sock.on('data', (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) onMessage(JSON.parse(line));
    }
  });
}

// The host end of the agent channel as the tests drive it: requests with ids,
// their answers and exec sessions routed by id.
class AgentClient {
  constructor(sock) {
    this.sock = sock;
    this.nextId = 1;
    this.msgs = [];
    this.listeners = new Set();
    jsonLines(sock, (m) => {
      this.msgs.push(m);
      for (const l of [...this.listeners]) l(m);
    });
    // A closed channel ends every wait (listeners see undefined).
    sock.on('close', () => {
      this.closed = true;
      for (const l of [...this.listeners]) l(undefined);
    });
  }

  send(obj) {
    this.sock.write(`${JSON.stringify(obj)}\n`);
  }

  // The first message (already received or still to come) that pred accepts.
  wait(pred, ms = 30000, what = 'a message') {
    const seen = this.msgs.find(pred);
    if (seen) return Promise.resolve(seen);
    if (this.closed) return Promise.reject(new Error(`no ${what}: the channel is closed`));
    return new Promise((res, rej) => {
      const l = (m) => {
        if (m === undefined) {
          clearTimeout(timer);
          this.listeners.delete(l);
          rej(new Error(`no ${what}: the channel closed`));
          return;
        }
        if (!pred(m)) return;
        clearTimeout(timer);
        this.listeners.delete(l);
        res(m);
      };
      const timer = setTimeout(() => {
        this.listeners.delete(l);
        rej(new Error(`no ${what} within ${ms} ms`));
      }, ms);
      this.listeners.add(l);
    });
  }

  request(obj, ms) {
    const id = this.nextId++;
    this.send({ ...obj, id });
    return this.wait((m) => m.id === id, ms, `answer to ${obj.type} ${id}`);
  }

  // Start an exec session: {id, started, exit, stdout(), stderr(), waitOutput(text), stdin(data), send(obj)}.
  exec(req, ms = 60000) {
    const id = this.nextId++;
    const out = [];
    const err = [];
    const outWaiters = [];
    const s = {
      id,
      stdout: () => Buffer.concat(out).toString(),
      stdoutBytes: () => Buffer.concat(out),
      stderr: () => Buffer.concat(err).toString(),
      waitOutput: (text) => (s.stdout().includes(text) ? Promise.resolve()
        : new Promise((res) => outWaiters.push({ text, res }))),
      stdin: (data) => this.send({ type: 'stdin', id, data: Buffer.from(data).toString('base64') }),
      send: (obj) => this.send({ ...obj, id }),
    };
    const l = (m) => {
      if (m === undefined) {
        this.listeners.delete(l);
        return;
      }
      if (m.id !== id) return;
      if (m.type === 'exec_started') s.running = true;
      if (m.type === 'output') {
        (m.stream === 'stderr' ? err : out).push(Buffer.from(m.data, 'base64'));
        for (const w of [...outWaiters]) {
          if (s.stdout().includes(w.text)) {
            outWaiters.splice(outWaiters.indexOf(w), 1);
            w.res();
          }
        }
      } else if (m.type === 'exec_exit' || (m.type === 'error' && !s.running)) {
        this.listeners.delete(l);
      }
    };
    this.listeners.add(l);
    // An error answers the exec request itself only before exec_started; later ones are about stdin etc.
    const ended = (m) => m.id === id && (m.type === 'exec_exit' || (m.type === 'error' && !s.running));
    s.started = this.wait((m) => m.id === id && m.type !== 'output', ms, `exec_started ${id}`);
    s.exit = this.wait(ended, ms, `exec_exit ${id}`);
    // Not every test awaits both; a rejection nobody awaits is not an error.
    s.started.catch(() => {});
    s.exit.catch(() => {});
    s.t0 = performance.now();
    this.send({ type: 'exec', id, ...req });
    return s;
  }

  // Run sh -c script; resolves with its stdout once it exited 0.
  async sh(script) {
    const s = this.exec({ command: ['sh', '-c', script] });
    const e = await s.exit;
    assert.equal(e.code, 0, `${script}: ${JSON.stringify(e)} ${s.stderr()}`);
    return s.stdout();
  }

  // cp_to req, then (once cp_ready) data in cp_data chunks and cp_end:
  // resolves with {id, ready, result} (result: the cp_result, or another answer).
  async cpTo(req, data = Buffer.alloc(0), { chunk = 32768, end = true } = {}) {
    const id = this.nextId++;
    this.send({ type: 'cp_to', id, ...req });
    const first = await this.wait((m) => m.id === id, 30000, `answer to cp_to ${id}`);
    if (first.type !== 'cp_ready') return { id, ready: false, result: first };
    for (let off = 0; off < data.length; off += chunk) {
      this.send({ type: 'cp_data', id, data: data.subarray(off, off + chunk).toString('base64') });
    }
    if (!end) return { id, ready: true };
    this.send({ type: 'cp_end', id });
    const result = await this.wait((m) => m.id === id && m.type !== 'cp_ready', 60000, `cp_result ${id}`);
    return { id, ready: true, result };
  }

  // cp_from: resolves with every message of the session, through cp_done or a final error.
  cpFrom(path, follow_links = false, ms = 60000) {
    const id = this.nextId++;
    const msgs = [];
    const done = new Promise((res, rej) => {
      const l = (m) => {
        if (m === undefined) {
          this.listeners.delete(l);
          clearTimeout(timer);
          rej(new Error(`cp_from ${id}: the channel closed`));
          return;
        }
        if (m.id !== id) return;
        msgs.push(m);
        if (m.type === 'cp_done' || m.type === 'error' || (m.type === 'cp_error' && m.final)) {
          this.listeners.delete(l);
          clearTimeout(timer);
          res(msgs);
        }
      };
      const timer = setTimeout(() => {
        this.listeners.delete(l);
        rej(new Error(`cp_from ${id}: no cp_done within ${ms} ms (${msgs.length} messages)`));
      }, ms);
      this.listeners.add(l);
    });
    this.send({ type: 'cp_from', id, path, follow_links });
    return done;
  }
}

// A cp_from session's messages as entries [{header, data}] and errors, checking
// the framing: data only inside a regular file, which ends with cp_file_end
// before anything else; chunks of at most 32 KiB; nothing after the end.
function cpEntries(msgs) {
  const entries = [];
  const errors = [];
  let open = null;
  msgs.forEach((m, i) => {
    const last = i === msgs.length - 1;
    if (m.type === 'cp_header') {
      assert.equal(open, null, `a header inside a file: ${JSON.stringify(m)}`);
      const e = { header: m, data: null };
      entries.push(e);
      if (!m.is_dir && !m.is_symlink) {
        e.chunks = [];
        open = e;
      }
    } else if (m.type === 'cp_data') {
      assert.ok(open, 'cp_data outside a file');
      const b = Buffer.from(m.data, 'base64');
      assert.ok(b.length > 0 && b.length <= 32768, `chunk of ${b.length} bytes`);
      open.chunks.push(b);
    } else if (m.type === 'cp_file_end') {
      assert.ok(open, 'cp_file_end outside a file');
      open.data = Buffer.concat(open.chunks);
      delete open.chunks;
      open = null;
    } else if (m.type === 'cp_error') {
      assert.equal(open, null, 'an error inside a file');
      assert.equal(m.final, last, `final is ${m.final} on message ${i} of ${msgs.length}`);
      errors.push(m);
    } else {
      assert.equal(m.type, 'cp_done', JSON.stringify(m));
      assert.ok(last, 'cp_done is the last message');
      assert.equal(open, null);
    }
  });
  return { entries, errors, done: msgs.at(-1).type === 'cp_done' };
}

const md5 = (b) => createHash('md5').update(b).digest('hex');

/*
 * Boot one guest. opts: cfg (config disk contents) or cfgBytes (raw), overlay
 * (an existing disk to reuse), debug, agent (async fn(ctx) run once the agent
 * socket is connected), qmp (connect a QMP socket too). Resolves with
 * {console, exit, code, signal, ms, dir} when QEMU has exited.
 */
async function boot(name, opts) {
  await acquire();
  try {
    return await bootNow(name, opts);
  } finally {
    release();
  }
}

async function bootNow(name, { cfg, cfgBytes, overlay, debug = false, agent, qmp = false, timeoutMs = BOOT_TIMEOUT_MS }) {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const cfgPath = join(dir, 'config.img');
  if (cfgBytes) writeFileSync(cfgPath, cfgBytes);
  else configDisk(cfgPath, cfg);
  const ov = overlay || join(dir, 'overlay.ext4');
  if (!overlay) overlayDisk(ov);
  const agentSock = join(dir, 'agent.sock');
  const qmpSock = join(dir, 'qmp.sock');
  const append = `console=ttyS0 panic=-1 quiet tsc_early_khz=${tscKhz()} cryptomgr.notests${debug ? ' hypeman.debug=1' : ''}`;
  const args = [
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-machine', 'microvm', '-accel', 'tcg', '-smp', '1', '-m', '256',
    '-kernel', join(KERNEL_DIR, 'vmlinux'), '-initrd', initrd, '-append', append,
    '-serial', 'stdio',
    '-drive', `id=d0,file=${cfgPath},format=raw,if=none`, '-device', 'virtio-blk-device,drive=d0',
    '-drive', `id=d1,file=${rootDisk},format=raw,if=none,readonly=on`, '-device', 'virtio-blk-device,drive=d1',
    '-drive', `id=d2,file=${ov},format=raw,if=none`, '-device', 'virtio-blk-device,drive=d2',
    '-device', 'virtio-serial-device,id=vs0',
    '-chardev', `socket,id=ag,path=${agentSock},server=on,wait=off`,
    '-device', 'virtserialport,bus=vs0.0,chardev=ag,name=hypeman.agent',
  ];
  if (qmp) args.push('-qmp', `unix:${qmpSock},server=on,wait=off`);
  const t0 = Date.now();
  const q = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(q);
  let consoleText = '';
  let stderr = '';
  const consoleWaiters = [];
  q.stdout.on('data', (d) => {
    consoleText += d.toString().replace(/\r/g, '');
    for (const w of [...consoleWaiters]) {
      if (consoleText.includes(w.text)) {
        consoleWaiters.splice(consoleWaiters.indexOf(w), 1);
        w.res();
      }
    }
  });
  q.stderr.on('data', (d) => { stderr += d.toString(); });
  const exited = new Promise((res) => q.on('exit', (code, signal) => res({ code, signal })));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try { process.kill(q.pid, 'SIGKILL'); } catch { /* gone already */ }
  }, timeoutMs);

  const ctx = {
    dir,
    get console() { return consoleText; },
    // Resolves when text shows up on the console (or rejects when QEMU is gone first).
    waitConsole(text) {
      if (consoleText.includes(text)) return Promise.resolve();
      return Promise.race([
        new Promise((res) => consoleWaiters.push({ text, res })),
        exited.then(() => { throw new Error(`QEMU exited before the console showed ${JSON.stringify(text)}:\n${consoleText}`); }),
      ]);
    },
    qmpSock,
  };
  let agentDone = Promise.resolve();
  if (agent) {
    const sock = await connectUnix(agentSock, Date.now() + 10000);
    agentDone = agent({ ...ctx, sock }).finally(() => sock.destroy());
  }
  const agentResult = await agentDone.then(() => null, (e) => e);
  const { code, signal } = await exited;
  clearTimeout(timer);
  running.delete(q);
  const ms = Date.now() - t0;
  if (agentResult) throw agentResult;
  assert.ok(!timedOut, `${name}: QEMU did not exit within ${timeoutMs} ms; console:\n${consoleText}`);
  return { console: consoleText, exit: readExit(cfgPath), code, signal, ms, stderr, dir, overlay: ov };
}

/*
 * One guest shared by a series of tests: boots with cfg and resolves `ready`
 * with {agent, ctx} once the program has started; the channel stays open
 * until end() is called, then `result` resolves as boot() does.
 */
function sharedGuest(name, cfg, timeoutMs) {
  let ready, end;
  const readyP = new Promise((res) => { ready = res; });
  const ended = new Promise((res) => { end = res; });
  const result = boot(name, {
    cfg,
    timeoutMs,
    agent: async (ctx) => {
      const agent = new AgentClient(ctx.sock);
      await agent.wait((m) => m.type === 'started', 20000, 'started');
      ready({ agent, ctx });
      await ended;
    },
  });
  result.catch(() => {}); // awaited by the last test; never an unhandled rejection
  return {
    ready: Promise.race([readyP, result.then(() => { throw new Error(`${name}: the guest ended early`); })]),
    result,
    end,
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Lines the program printed (the console minus kernel and init messages).
const appLines = (text) => text.split('\n').filter((l) => l && !l.startsWith('[') && !l.startsWith('hypeman-init:'));

// ---- tests -------------------------------------------------------------------------------

before(() => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), 'hm-guest-'));
  rootDisk = join(work, 'root.erofs');
  buildRootDisk(join(work, 'rootfs'), rootDisk);
  initrd = join(work, 'initrd.cpio');
  buildInitrd(initrd);
});

after(() => {
  for (const q of running) {
    try { process.kill(q.pid, 'SIGKILL'); } catch { /* gone already */ }
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('guest init', { concurrency: MAX_PARALLEL, skip }, () => {
  test('a program that prints and exits 0: console line, exit record success, QEMU exits', async () => {
    const r = await boot('hello', { cfg: { argv: ['/bin/echo', 'hello from the guest'] } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.signal, null);
    assert.ok(appLines(r.console).includes('hello from the guest'), r.console);
    assert.deepEqual(r.exit, { code: 0, message: 'success' });
    // The overlay disk was unmounted cleanly before power-off.
    const fsck = execFileSync('dumpe2fs', ['-h', r.overlay], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    assert.match(fsck, /Filesystem state:\s+clean/);
  });

  test('exit 3 is "exit status 3"', async () => {
    const r = await boot('exit3', { cfg: { argv: ['/bin/sh', '-c', 'exit 3'] } });
    assert.equal(r.code, 0);
    assert.deepEqual(r.exit, { code: 3, message: 'exit status 3' });
  });

  test('a program killed by SIGKILL is 137', async () => {
    const r = await boot('kill9', { cfg: { argv: ['/bin/sh', '-c', 'echo dying; kill -9 $$'] } });
    assert.ok(appLines(r.console).includes('dying'));
    assert.deepEqual(r.exit, { code: 137, message: 'killed by signal 9 (SIGKILL)' });
  });

  test('a program the kernel kills for memory is 137 "- OOM"', async () => {
    // tail buffers a "line" of /dev/zero that never ends, until the OOM killer stops it.
    const r = await boot('oom', { cfg: { argv: ['/bin/busybox', 'tail', '/dev/zero'] } });
    assert.equal(r.code, 0);
    assert.deepEqual(r.exit, { code: 137, message: 'killed by signal 9 (SIGKILL) - OOM' });
  });

  test('what the program leaves behind is stopped: SIGTERM, then SIGKILL after 2 s', async () => {
    const r = await boot('orphans', {
      debug: true,
      cfg: { argv: ['/bin/sh', '-c', "trap '' TERM; sleep 100 & echo left-behind; exit 0"] },
    });
    assert.ok(appLines(r.console).includes('left-behind'), r.console);
    assert.deepEqual(r.exit, { code: 0, message: 'success' });
    const ended = Number(r.console.match(/\[\s*([\d.]+)\] program ended/)[1]);
    const killed = Number(r.console.match(/\[\s*([\d.]+)\] SIGKILL to what is left/)[1]);
    assert.ok(killed - ended >= 1.9 && killed - ended < 3, `${ended} -> ${killed}`);
    assert.match(r.console, /overlay disk unmounted/);
  });

  test('a command that is not there is 127, one that is not executable 126', async () => {
    const [nf, ne] = await Promise.all([
      boot('notfound', { cfg: { argv: ['no-such-command', 'arg'] } }),
      boot('notexec', { cfg: { argv: ['/notexec'] } }),
    ]);
    assert.deepEqual(nf.exit, { code: 127, message: 'command not found: no-such-command' });
    assert.match(nf.console, /hypeman-init: command not found: no-such-command/);
    assert.equal(nf.code, 0);
    assert.deepEqual(ne.exit, { code: 126, message: 'permission denied: /notexec' });
  });

  test('argv, env, workdir, user and hostname as the program sees them', async () => {
    const script = 'echo "argc=$#"; for a in "$@"; do echo "arg=[$a]"; done; echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; '
      + 'echo "pwd=$(pwd)"; echo "host=$(hostname)"; env | sort; grep testbox /etc/hosts; cat /etc/resolv.conf';
    const r = await boot('identity', {
      cfg: {
        argv: ['/bin/sh', '-c', script, 'sh', 'two words', 'a=b', 'line1\nline2'],
        env: ['FOO=bar baz', 'EQ=x=y'],
        workdir: '/srv/work dir',
        user: 'app',
        hostname: 'testbox',
        dns: ['10.0.0.53', '10.0.0.54'],
      },
    });
    assert.deepEqual(r.exit, { code: 0, message: 'success' }, r.console);
    const lines = appLines(r.console);
    for (const want of ['argc=3', 'arg=[two words]', 'arg=[a=b]', 'arg=[line1', 'line2]',
      'uid=1000 gid=1000 groups=1000 2000', 'pwd=/srv/work dir', 'host=testbox',
      'FOO=bar baz', 'EQ=x=y', 'HOME=/home/app', 'HOSTNAME=testbox',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'nameserver 10.0.0.53', 'nameserver 10.0.0.54']) {
      assert.ok(lines.includes(want), `missing ${JSON.stringify(want)} in:\n${lines.join('\n')}`);
    }
    assert.ok(lines.some((l) => /^127\.0\.1\.1\s+testbox$/.test(l)), lines.join('\n'));
    // Defaults: root, "/", HOME from passwd, the image's PATH wins over the default.
    const d = await boot('identity-defaults', {
      cfg: { argv: ['/bin/sh', '-c', 'echo "uid=$(id -u) pwd=$(pwd) home=$HOME host=$(hostname) path=$PATH"'], env: ['PATH=/bin'], user: '0:2000' },
    });
    assert.ok(appLines(d.console).includes('uid=0 pwd=/ home=/root host=hypeman path=/bin'), d.console);
    assert.deepEqual(d.exit, { code: 0, message: 'success' });
  });

  test('a file written to the overlay persists to the next boot with the same overlay disk', async () => {
    const first = await boot('persist-1', { cfg: { argv: ['/bin/sh', '-c', 'mkdir -p /data && echo kept-across-boots > /data/file && echo written'] } });
    assert.ok(appLines(first.console).includes('written'), first.console);
    assert.deepEqual(first.exit, { code: 0, message: 'success' });
    const second = await boot('persist-2', { overlay: first.overlay, cfg: { argv: ['/bin/cat', '/data/file'] } });
    assert.ok(appLines(second.console).includes('kept-across-boots'), second.console);
    assert.deepEqual(second.exit, { code: 0, message: 'success' });
    // The read-only root was not touched: a fresh overlay does not have the file.
    const third = await boot('persist-3', { cfg: { argv: ['/bin/cat', '/data/file'] } });
    assert.equal(third.exit.code, 1);
  });

  test('a broken config disk is reported on the console and in the exit record, then power off', async () => {
    const garbage = randomBytes(CFG_SIZE);
    garbage.fill(0, CFG_SIZE - EXIT_SIZE);
    const r = await boot('garbage', { cfgBytes: garbage });
    assert.equal(r.code, 0);
    assert.match(r.console, /hypeman-init: bad config disk \/dev\/vda: no config magic/);
    assert.equal(r.exit.code, 255);
    assert.match(r.exit.message, /^init: bad config disk \/dev\/vda: no config magic/);

    // A config naming a root disk that does not exist: 255 naming the device.
    const noroot = await boot('noroot', { cfg: { argv: ['/bin/true'], root: '/dev/vdz' }, debug: true });
    assert.equal(noroot.exit.code, 255);
    assert.match(noroot.exit.message, /^init: device \/dev\/vdz did not appear/);
    assert.match(noroot.console, /hypeman-init: \[\s*[\d.]+\] init started/, 'debug narrates steps');
  });

  test('agent: boot, started, ping/pong, a signal message reaches the program, exit', async () => {
    const msgs = [];
    const r = await boot('agent', {
      cfg: { argv: ['/bin/sh', '-c', "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done"] },
      agent: async ({ sock, waitConsole }) => {
        const seen = (type) => new Promise((res) => {
          const check = () => { const m = msgs.find((x) => x.type === type); if (m) res(m); else setTimeout(check, 10); };
          check();
        });
        jsonLines(sock, (m) => msgs.push(m));
        await seen('started');
        sock.write('{"type":"ping"}\n');
        await seen('pong');
        await waitConsole('ready');
        sock.write('{"type":"signal","signal":15}\n');
        await seen('exit');
      },
    });
    assert.deepEqual(msgs.map((m) => m.type), ['boot', 'started', 'pong', 'exit']);
    assert.ok(Number.isInteger(msgs[0].uptime_ms) && msgs[0].uptime_ms > 0);
    assert.ok(Number.isInteger(msgs[1].pid) && msgs[1].pid > 1);
    assert.ok(msgs[1].uptime_ms >= msgs[0].uptime_ms);
    assert.deepEqual({ code: msgs[3].code, message: msgs[3].message }, { code: 7, message: 'exit status 7' });
    assert.ok(appLines(r.console).includes('got-term'), r.console);
    assert.deepEqual(r.exit, { code: 7, message: 'exit status 7' });
  });

  test('the ACPI power button (QMP system_powerdown) is SIGTERM to the program', async () => {
    const r = await boot('powerbutton', {
      qmp: true,
      cfg: { argv: ['/bin/sh', '-c', "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.1; done"] },
      agent: async ({ waitConsole, qmpSock }) => {
        await waitConsole('ready');
        const q = await connectUnix(qmpSock, Date.now() + 5000);
        const replies = [];
        jsonLines(q, (m) => replies.push(m));
        q.write('{"execute":"qmp_capabilities"}\n{"execute":"system_powerdown"}\n');
        await waitConsole('got-term');
        q.destroy();
      },
    });
    assert.deepEqual(r.exit, { code: 9, message: 'exit status 9' });
  });

  describe('agent: stat and exec sessions in one guest', { concurrency: 1 }, () => {
    let vm;
    before(() => {
      vm = sharedGuest('exec', {
        argv: ['/bin/sh', '-c', "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done"],
        env: ['FROM_CONFIG=yes'],
      }, 180000);
    });
    after(() => vm?.end());

    test('stat: a file, a directory, a symlink with and without follow_links, missing paths', async () => {
      const { agent } = await vm.ready;
      const st = async (path, follow_links) => {
        const m = await agent.request({ type: 'stat', path, follow_links });
        assert.equal(m.type, 'stat', JSON.stringify(m));
        delete m.type;
        delete m.id;
        return m;
      };
      assert.deepEqual(await st('/srv/data/file.txt', false), {
        exists: true, is_dir: false, is_file: true, is_symlink: false, link_target: null, mode: 0o640, size: 12,
      });
      const dir = await st('/srv/data', false);
      assert.equal(dir.exists, true);
      assert.equal(dir.is_dir, true);
      assert.equal(dir.is_file, false);
      assert.equal(dir.is_symlink, false);
      assert.deepEqual(await st('/srv/link', false), {
        exists: true, is_dir: false, is_file: false, is_symlink: true, link_target: 'data/file.txt', mode: 0o777, size: 13,
      });
      assert.deepEqual(await st('/srv/link', true), {
        exists: true, is_dir: false, is_file: true, is_symlink: false, link_target: null, mode: 0o640, size: 12,
      });
      assert.deepEqual(await st('/srv/no-such-file', false), { exists: false });
      assert.deepEqual(await st('/srv/data/file.txt/below-a-file', true), { exists: false });
      // A request it cannot serve is answered with an error carrying its id.
      const bad = await agent.request({ type: 'stat' });
      assert.equal(bad.type, 'error');
      assert.match(bad.message, /path/);
    });

    test('the channel survives garbage: malformed lines, an over-long line, unknown types', async () => {
      const { agent } = await vm.ready;
      agent.sock.write('not json\n{"type":\n\n{"type":"exec","id":"x"}\n[1,2]\n');
      agent.sock.write(`{"type":"stat","id":99999,"path":"${'a'.repeat(70000)}"}\n`);
      const unknown = await agent.request({ type: 'frobnicate' });
      assert.deepEqual({ type: unknown.type, message: unknown.message }, { type: 'error', message: 'unknown message type `frobnicate`' });
      const pong = await agent.request({ type: 'ping' });
      assert.equal(pong.type, 'pong');
      assert.ok(!agent.msgs.some((m) => m.id === 99999), 'the over-long line was dropped');
      // Unknown fields, nulls and other numbers do not disturb a known request.
      const ok = await agent.request({ type: 'stat', path: '/', follow_links: null, future: [], ratio: 1.5 });
      assert.equal(ok.is_dir, true);
    });

    test('exec: echo hi prints "hi\\n" and exits 0; env, cwd, user and stderr', async () => {
      const { agent } = await vm.ready;
      const s = agent.exec({ command: ['echo', 'hi'] });
      const started = await s.started;
      assert.equal(started.type, 'exec_started', JSON.stringify(started));
      assert.ok(Number.isInteger(started.pid) && started.pid > 1);
      assert.deepEqual(await s.exit, { type: 'exec_exit', id: s.id, code: 0 });
      assert.equal(s.stdout(), 'hi\n');
      assert.equal(s.stderr(), '');

      const e = agent.exec({
        command: ['sh', '-c', 'echo "$FOO|$FROM_CONFIG|$HOME|$(pwd)|$(id -u)|$PATH"; echo oops >&2'],
        env: { FOO: 'bar baz', PATH: '/bin' },
        cwd: '/tmp',
        user: 'app',
      });
      assert.equal((await e.exit).code, 0);
      assert.equal(e.stdout(), 'bar baz|yes|/home/app|/tmp|1000|/bin\n');
      assert.equal(e.stderr(), 'oops\n');
    });

    test('exec: exit codes, a missing command is 127 with an error, a bad cwd or user 126', async () => {
      const { agent } = await vm.ready;
      const five = agent.exec({ command: ['sh', '-c', 'exit 5'] });
      assert.equal((await five.started).type, 'exec_started');
      assert.equal((await five.exit).code, 5);

      const missing = agent.exec({ command: ['no-such-command', 'x'] });
      assert.deepEqual(await missing.exit, { type: 'exec_exit', id: missing.id, code: 127, error: 'command not found: no-such-command' });
      assert.ok(!agent.msgs.some((m) => m.id === missing.id && m.type === 'exec_started'));

      const notexec = agent.exec({ command: ['/notexec'] });
      assert.deepEqual(await notexec.exit, { type: 'exec_exit', id: notexec.id, code: 126, error: 'permission denied: /notexec' });
      const cwd = agent.exec({ command: ['true'], cwd: '/no/such/dir' });
      const c = await cwd.exit;
      assert.equal(c.code, 126);
      assert.match(c.error, /\/no\/such\/dir: No such file or directory/);
      const user = agent.exec({ command: ['true'], user: 'nobody-here' });
      assert.deepEqual(await user.exit, { type: 'exec_exit', id: user.id, code: 126, error: 'user `nobody-here`: no such user in /etc/passwd' });
    });

    test('exec: cat echoes its stdin and exits 0 after stdin_close', async () => {
      const { agent } = await vm.ready;
      const s = agent.exec({ command: ['cat'] });
      assert.equal((await s.started).type, 'exec_started');
      s.stdin('hello ');
      const bin = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      s.stdin(bin);
      s.stdin('world\n');
      s.send({ type: 'stdin_close' });
      assert.equal((await s.exit).code, 0);
      assert.deepEqual(s.stdoutBytes(), Buffer.concat([Buffer.from('hello '), bin, Buffer.from('world\n')]));
    });

    test('exec: 1 MiB of output arrives complete', async () => {
      const { agent } = await vm.ready;
      const s = agent.exec({ command: ['sh', '-c', "head -c 1048576 /dev/zero | tr '\\0' x"] });
      assert.equal((await s.exit).code, 0);
      const out = s.stdoutBytes();
      assert.equal(out.length, 1048576);
      assert.ok(out.every((b) => b === 0x78));
      const chunks = agent.msgs.filter((m) => m.id === s.id && m.type === 'output');
      assert.ok(chunks.every((m) => Buffer.from(m.data, 'base64').length <= 32768));
    });

    test('backpressure: a host that stops reading for a while loses no output', async () => {
      const { agent } = await vm.ready;
      const size = 4 << 20;
      agent.sock.pause();
      const s = agent.exec({ command: ['sh', '-c', `head -c ${size} /dev/zero | tr '\\0' y; echo done >&2`] });
      await sleep(1500);
      agent.sock.resume();
      assert.equal((await s.exit).code, 0);
      const out = s.stdoutBytes();
      assert.equal(out.length, size);
      assert.ok(out.every((b) => b === 0x79));
      assert.equal(s.stderr(), 'done\n');
    });

    test('exec with a tty: tty names a /dev/pts device; stty size follows rows/cols and resize', async () => {
      const { agent } = await vm.ready;
      const t = agent.exec({ command: ['tty'], tty: true });
      assert.equal((await t.exit).code, 0);
      assert.match(t.stdout(), /^\/dev\/pts\/\d+\r\n$/);

      const s = agent.exec({ command: ['sh', '-c', 'stty size; read x; stty size'], tty: true, rows: 30, cols: 100 });
      await s.waitOutput('30 100');
      s.send({ type: 'resize', rows: 40, cols: 120 });
      // Ask for the size only once the resize has been handled (the ping is answered after it).
      await agent.request({ type: 'ping' });
      s.stdin('\n');
      assert.equal((await s.exit).code, 0);
      assert.match(s.stdout(), /30 100\r\n[\s\S]*40 120\r\n$/);

      const r = await agent.request({ type: 'resize', rows: 1, cols: 1 });
      assert.equal(r.type, 'error');
    });

    test('kill: SIGKILL to a sleep 100 session is exit 137; its unread stdin is bounded', async () => {
      const { agent } = await vm.ready;
      const s = agent.exec({ command: ['sleep', '100'] });
      assert.equal((await s.started).type, 'exec_started');
      // sleep never reads: past the pipe and the 1 MiB queue, stdin is refused, not buffered.
      const chunk = Buffer.alloc(32768, 0x61);
      for (let i = 0; i < 40; i++) s.stdin(chunk);
      const full = await agent.wait((m) => m.id === s.id && m.type === 'error', 10000, 'stdin error');
      assert.match(full.message, /stdin waiting: data dropped/);
      const t0 = performance.now();
      s.send({ type: 'kill', signal: 9 });
      assert.equal((await s.exit).code, 137);
      assert.ok(performance.now() - t0 < 5000);
    });

    test('two sessions at once: interleaved output, each to its own id', async () => {
      const { agent } = await vm.ready;
      const loop = (tag) => ['sh', '-c', `for i in 1 2 3 4; do echo ${tag}$i; sleep 0.2; done`];
      const a = agent.exec({ command: loop('a') });
      const b = agent.exec({ command: loop('b') });
      const [ea, eb] = await Promise.all([a.exit, b.exit]);
      assert.equal(ea.code, 0);
      assert.equal(eb.code, 0);
      assert.equal(a.stdout(), 'a1\na2\na3\na4\n');
      assert.equal(b.stdout(), 'b1\nb2\nb3\nb4\n');
      const order = agent.msgs.filter((m) => m.type === 'output' && (m.id === a.id || m.id === b.id)).map((m) => m.id);
      assert.ok(order.indexOf(b.id) < order.lastIndexOf(a.id), `interleaved: ${order}`);
    });

    test('measure: exec round trip and output throughput', async (t) => {
      const { agent } = await vm.ready;
      const rtts = [];
      for (let i = 0; i < 15; i++) {
        const t0 = performance.now();
        const s = agent.exec({ command: ['true'] });
        assert.equal((await s.exit).code, 0);
        rtts.push(performance.now() - t0);
      }
      const size = 16 << 20;
      const s = agent.exec({ command: ['head', '-c', String(size), '/dev/zero'] });
      await s.started;
      const t0 = performance.now();
      assert.equal((await s.exit).code, 0);
      const secs = (performance.now() - t0) / 1000;
      assert.equal(s.stdoutBytes().length, size);
      t.diagnostic(`exec true round trip: median ${median(rtts).toFixed(1)} ms, min ${Math.min(...rtts).toFixed(1)} ms (${rtts.length} runs)`);
      t.diagnostic(`exec output throughput: ${(size / (1 << 20) / secs).toFixed(1)} MiB/s (${size >> 20} MiB in ${secs.toFixed(2)} s)`);
    });

    test('stop: SIGTERM ends the program (it prints bye, exits 0), the guest powers off', async () => {
      const { agent } = await vm.ready;
      agent.send({ type: 'stop', timeout_ms: 10000 });
      const exit = await agent.wait((m) => m.type === 'exit', 20000, 'exit');
      assert.deepEqual({ code: exit.code, message: exit.message }, { code: 0, message: 'success' });
      vm.end();
      const r = await vm.result;
      assert.ok(appLines(r.console).includes('bye'), r.console);
      assert.deepEqual(r.exit, { code: 0, message: 'success' });
    });
  });

  describe('agent: copying files (cp) in one guest', { concurrency: 1 }, () => {
    let vm;
    before(() => {
      vm = sharedGuest('cp', {
        argv: ['/bin/sh', '-c', "trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done"],
      }, 180000);
    });
    after(() => vm?.end());

    // Temporary files of cp_to anywhere in /tmp (where these tests write).
    const temps = (agent) => agent.sh("find /tmp -name '.*.hypeman-cp-*'");

    test('cp_to: 300 KiB of binary data in chunks arrive whole with mode, owner and mtime; a second copy replaces it', async () => {
      const { agent } = await vm.ready;
      const data = randomBytes(300 * 1024 + 7);
      const { ready, result } = await agent.cpTo({ path: '/tmp/up.bin', mode: 0o640, uid: 1000, gid: 1000, mtime: 1600000000 }, data);
      assert.ok(ready);
      assert.deepEqual(result, { type: 'cp_result', id: result.id, bytes_written: data.length });
      assert.equal(await agent.sh('md5sum /tmp/up.bin'), `${md5(data)}  /tmp/up.bin\n`);
      assert.equal(await agent.sh("stat -c '%a %s %Y %u %g %F' /tmp/up.bin"), `640 ${data.length} 1600000000 1000 1000 regular file\n`);
      const st = await agent.request({ type: 'stat', path: '/tmp/up.bin', follow_links: false });
      assert.deepEqual([st.is_file, st.mode, st.size], [true, 0o640, data.length]);

      // Over an existing file; no mode given is 0644, no owner given is root.
      const again = await agent.cpTo({ path: '/tmp/up.bin' }, Buffer.from('short now\n'), { chunk: 4 });
      assert.equal(again.result.bytes_written, 10);
      assert.equal(await agent.sh("cat /tmp/up.bin; stat -c '%a %u' /tmp/up.bin"), 'short now\n644 0\n');
      // An empty file and a setuid mode.
      const empty = await agent.cpTo({ path: '/tmp/empty.bin', mode: 0o4755 });
      assert.equal(empty.result.bytes_written, 0);
      assert.equal(await agent.sh("stat -c '%a %s' /tmp/empty.bin"), '4755 0\n');
      assert.equal(await temps(agent), '');
    });

    test('cp_to: into an existing directory with name, a directory with is_dir, missing parents are created', async () => {
      const { agent } = await vm.ready;
      const named = await agent.cpTo({ path: '/tmp', name: 'named.txt' }, Buffer.from('hello'));
      assert.equal(named.result.bytes_written, 5, JSON.stringify(named.result));
      assert.equal(await agent.sh("cat /tmp/named.txt; echo; stat -c '%a' /tmp/named.txt"), 'hello\n644\n');
      // name only matters when path is an existing directory: otherwise path is the file.
      const plain = await agent.cpTo({ path: '/tmp/not-a-dir', name: 'ignored' }, Buffer.from('x'));
      assert.equal(plain.result.bytes_written, 1);
      assert.equal(await agent.sh("stat -c '%F' /tmp/not-a-dir"), 'regular file\n');

      const dir = await agent.cpTo({ path: '/tmp/newdir/a/b', is_dir: true, mode: 0o700, mtime: 1500000000 });
      assert.equal(dir.ready, false, 'a directory is answered at once');
      assert.equal(dir.result.type, 'cp_result');
      assert.equal(dir.result.error, undefined, JSON.stringify(dir.result));
      assert.equal(await agent.sh("stat -c '%n %a %F' /tmp/newdir /tmp/newdir/a; stat -c '%a %F %Y' /tmp/newdir/a/b"),
        '/tmp/newdir 755 directory\n/tmp/newdir/a 755 directory\n700 directory 1500000000\n');
      // An existing directory: its mode is set again.
      const redo = await agent.cpTo({ path: '/tmp/newdir/a/b', is_dir: true });
      assert.equal(redo.result.error, undefined);
      assert.equal(await agent.sh("stat -c '%a' /tmp/newdir/a/b"), '755\n');

      const deep = await agent.cpTo({ path: '/tmp/deep/x/y/file.txt', mode: 0o600 }, Buffer.from('deep'));
      assert.equal(deep.result.bytes_written, 4, JSON.stringify(deep.result));
      assert.equal(await agent.sh("cat /tmp/deep/x/y/file.txt; echo; stat -c '%a %F' /tmp/deep/x/y /tmp/deep/x/y/file.txt"),
        'deep\n755 directory\n600 regular file\n');
      assert.equal(await temps(agent), '');
    });

    test('cp_to errors: a relative path, a path under a regular file, bad fields, a directory as target; no temporary file is left', async () => {
      const { agent } = await vm.ready;
      const expectError = async (req, re) => {
        const { ready, result } = await agent.cpTo(req, Buffer.from('data'));
        assert.equal(ready, false, JSON.stringify(req));
        assert.equal(result.type, 'cp_result', JSON.stringify(result));
        assert.match(result.error, re);
        assert.equal(result.bytes_written, undefined);
        return result;
      };
      await expectError({ path: 'tmp/relative' }, /`path` must be an absolute path/);
      await expectError({ path: '/srv/data/file.txt/below' }, /create a temporary file in \/srv\/data\/file\.txt: Not a directory/);
      await expectError({ path: '/srv/data/file.txt/x/y' }, /mkdir \/srv\/data\/file\.txt\/x: Not a directory/);
      await expectError({ path: '/tmp/m', mode: 0o10000 }, /`mode` 0 to 07777/);
      await expectError({ path: '/tmp/m', uid: -1 }, /`uid` and `gid`/);
      await expectError({ path: '/tmp/m', mode: '644' }, /`mode`/);
      await expectError({ path: '/tmp/m', name: 'a/b' }, /`name` must be a file name/);
      await expectError({ path: '/tmp' }, /cp_to \/tmp: Is a directory/);
      const under = await expectError({ path: '/srv/data/file.txt/z', is_dir: true }, /mkdir \/srv\/data\/file\.txt\/z: Not a directory/);
      // The host may have sent data before the error arrived: later cp_data and cp_end are ignored.
      agent.send({ type: 'cp_data', id: under.id, data: 'aGk=' });
      agent.send({ type: 'cp_end', id: under.id });
      // A cp_data for an id that never had a session is answered once, then ignored.
      agent.send({ type: 'cp_data', id: 424242, data: 'aGk=' });
      agent.send({ type: 'cp_data', id: 424242, data: 'aGk=' });
      agent.send({ type: 'cp_end', id: 424242 });
      await agent.request({ type: 'ping' });
      assert.equal(agent.msgs.filter((m) => m.id === under.id).length, 1);
      const unknown = agent.msgs.filter((m) => m.id === 424242);
      assert.deepEqual(unknown, [{ type: 'cp_result', id: 424242, error: 'cp_data: no copy session 424242' }]);
      // Bad base64 in cp_data ends a session with an error; the target is not created.
      const { id, ready } = await agent.cpTo({ path: '/tmp/bad64' }, Buffer.alloc(0), { end: false });
      assert.ok(ready);
      agent.send({ type: 'cp_data', id, data: '!!!' });
      const bad = await agent.wait((m) => m.id === id && m.type === 'cp_result');
      assert.match(bad.error, /base64/);
      assert.equal(await agent.sh('ls /tmp/bad64 2>&1 || true'), 'ls: /tmp/bad64: No such file or directory\n');
      assert.equal(await agent.sh('ls /srv/data'), 'file.txt\n');
      assert.equal(await temps(agent), '');
    });

    test('cp_abort: the temporary file is removed, the old target is intact', async () => {
      const { agent } = await vm.ready;
      await agent.cpTo({ path: '/tmp/keep.txt' }, Buffer.from('original'));
      const { id, ready } = await agent.cpTo({ path: '/tmp/keep.txt' }, Buffer.from('partial new conte'), { end: false });
      assert.ok(ready);
      // The bytes so far sit in a temporary file next to the target.
      const tmp = (await temps(agent)).trim();
      assert.match(tmp, /^\/tmp\/\.keep\.txt\.hypeman-cp-\w{6}$/);
      assert.equal(await agent.sh(`cat ${tmp}`), 'partial new conte');
      assert.equal(await agent.sh('cat /tmp/keep.txt'), 'original');
      agent.send({ type: 'cp_abort', id });
      assert.equal((await agent.request({ type: 'ping' })).type, 'pong');
      assert.ok(!agent.msgs.some((m) => m.id === id && m.type !== 'cp_ready'), 'cp_abort is not answered');
      assert.equal(await agent.sh('cat /tmp/keep.txt'), 'original');
      assert.equal(await temps(agent), '');
    });

    test('cp_from: a single file, a symlink with and without follow_links, a missing path', async () => {
      const { agent } = await vm.ready;
      const file = cpEntries(await agent.cpFrom('/srv/data/file.txt'));
      assert.ok(file.done);
      assert.deepEqual(file.errors, []);
      assert.equal(file.entries.length, 1);
      const h = file.entries[0].header;
      assert.deepEqual({ ...h, id: 0, mtime: 0 }, {
        type: 'cp_header', id: 0, path: 'file.txt', mode: 0o640, is_dir: false, is_symlink: false, link_target: null,
        size: 12, mtime: 0, uid: 0, gid: 0,
      });
      assert.ok(h.mtime > 1600000000, `mtime ${h.mtime}`);
      assert.equal(file.entries[0].data.toString(), 'twelve bytes');

      const link = cpEntries(await agent.cpFrom('/srv/link'));
      assert.deepEqual(link.entries.map((e) => [e.header.path, e.header.is_symlink, e.header.link_target, e.data]),
        [['link', true, 'data/file.txt', null]]);
      const followed = cpEntries(await agent.cpFrom('/srv/link', true));
      assert.deepEqual(followed.entries.map((e) => [e.header.path, e.header.is_symlink, e.header.size, e.data.toString()]),
        [['link', false, 12, 'twelve bytes']]);

      const missing = await agent.cpFrom('/srv/nope');
      assert.equal(missing.length, 1);
      assert.deepEqual({ ...missing[0], id: 0 }, {
        type: 'cp_error', id: 0, path: 'nope', message: 'lstat /srv/nope: No such file or directory', final: true,
      });
      const relative = await agent.cpFrom('srv/data');
      assert.deepEqual([relative[0].type, relative[0].final], ['cp_error', true]);
      assert.match(relative[0].message, /absolute/);
    });

    test('cp_from: a directory tree (nested dir, empty file, symlink, fifo) comes parents first, paths from its basename', async () => {
      const { agent } = await vm.ready;
      await agent.sh('mkdir -p /tmp/tree/sub/nested && printf abc > /tmp/tree/sub/nested/f.txt && : > /tmp/tree/empty'
        + ' && ln -s sub/nested/f.txt /tmp/tree/ln && mkfifo /tmp/tree/fifo && printf top > /tmp/tree/top.txt'
        + ' && chmod 750 /tmp/tree/sub && chmod 600 /tmp/tree/top.txt');
      for (const path of ['/tmp/tree', '/tmp/tree/', '/tmp/tree/sub/..']) {
        const { entries, errors, done } = cpEntries(await agent.cpFrom(path));
        assert.ok(done);
        const paths = entries.map((e) => e.header.path);
        assert.deepEqual([...paths].sort(), ['tree', 'tree/empty', 'tree/ln', 'tree/sub', 'tree/sub/nested', 'tree/sub/nested/f.txt', 'tree/top.txt']);
        assert.equal(paths[0], 'tree');
        paths.forEach((p, i) => {
          const parent = p.split('/').slice(0, -1).join('/');
          if (parent) assert.ok(paths.indexOf(parent) < i, `${parent} before ${p}: ${paths}`);
        });
        const by = Object.fromEntries(entries.map((e) => [e.header.path, e]));
        assert.deepEqual([by.tree.header.is_dir, by['tree/sub'].header.is_dir, by['tree/sub'].header.mode], [true, true, 0o750]);
        assert.equal(by['tree/sub/nested/f.txt'].data.toString(), 'abc');
        assert.deepEqual([by['tree/top.txt'].data.toString(), by['tree/top.txt'].header.mode, by['tree/top.txt'].header.size], ['top', 0o600, 3]);
        assert.deepEqual([by['tree/empty'].data.length, by['tree/empty'].header.size], [0, 0]);
        assert.deepEqual([by['tree/ln'].header.is_symlink, by['tree/ln'].header.link_target, by['tree/ln'].data], [true, 'sub/nested/f.txt', null]);
        assert.deepEqual(errors.map((e) => [e.path, e.final]), [['tree/fifo', false]]);
        assert.match(errors[0].message, /not a regular file, directory or symlink/);
      }
      // The root itself is "."; cp_abort ends a walk: nothing more comes for it.
      const id = agent.nextId++;
      agent.send({ type: 'cp_from', id, path: '/' });
      const first = await agent.wait((m) => m.id === id && m.type === 'cp_header');
      assert.deepEqual([first.path, first.is_dir], ['.', true]);
      agent.send({ type: 'cp_abort', id });
      await agent.request({ type: 'ping' });
      const n = agent.msgs.filter((m) => m.id === id).length;
      await sleep(300);
      assert.equal(agent.msgs.filter((m) => m.id === id).length, n);
      assert.ok(!agent.msgs.some((m) => m.id === id && m.type === 'cp_done'));
      assert.ok(agent.msgs.filter((m) => m.id === id && m.type === 'cp_header').every((m) => m.path === '.' || m.path.startsWith('./')));
    });

    test('cp_from: 4 MiB with a host that stops reading for a while loses nothing; a round trip through cp_to', async (t) => {
      const { agent } = await vm.ready;
      const sum = (await agent.sh('dd if=/dev/urandom of=/tmp/big bs=65536 count=64 2>/dev/null && md5sum /tmp/big')).split(' ')[0];
      agent.sock.pause();
      const copied = agent.cpFrom('/tmp/big');
      await sleep(1500);
      agent.sock.resume();
      const t0 = performance.now();
      const { entries, errors, done } = cpEntries(await copied);
      const secs = (performance.now() - t0) / 1000;
      assert.ok(done);
      assert.deepEqual(errors, []);
      assert.equal(entries.length, 1);
      assert.equal(entries[0].header.size, 4 << 20);
      assert.equal(entries[0].data.length, 4 << 20);
      assert.equal(md5(entries[0].data), sum);
      t.diagnostic(`cp_from throughput after the pause: ${(4 / secs).toFixed(1)} MiB/s`);

      const t1 = performance.now();
      const back = await agent.cpTo({ path: '/tmp/big.back' }, entries[0].data);
      t.diagnostic(`cp_to throughput: ${(4 / ((performance.now() - t1) / 1000)).toFixed(1)} MiB/s`);
      assert.equal(back.result.bytes_written, 4 << 20);
      assert.equal(await agent.sh('md5sum < /tmp/big.back'), `${sum}  -\n`);
    });

    test('a host that goes away ends its copies: the temporary file is removed; then stop', async () => {
      const { agent, ctx } = await vm.ready;
      const { ready } = await agent.cpTo({ path: '/tmp/gone.txt' }, Buffer.from('half'), { end: false });
      assert.ok(ready);
      agent.sock.pause();
      agent.cpFrom('/tmp/big').catch(() => {});
      await sleep(200);
      agent.sock.destroy();
      await sleep(300);
      const again = await connectUnix(join(ctx.dir, 'agent.sock'), Date.now() + 5000);
      try {
        const a2 = new AgentClient(again);
        a2.send({ type: 'hello' }); // a new host: the guest drops the old one's sessions
        let left;
        for (let i = 0; i < 30; i++) {
          left = await temps(a2);
          if (!left) break;
          await sleep(100);
        }
        assert.equal(left, '');
        assert.equal(await a2.sh('ls /tmp/gone.txt 2>&1 || true'), 'ls: /tmp/gone.txt: No such file or directory\n');
        const file = cpEntries(await a2.cpFrom('/srv/data/file.txt'));
        assert.equal(file.entries[0].data.toString(), 'twelve bytes');
        a2.send({ type: 'stop', timeout_ms: 5000 });
        const exit = await a2.wait((m) => m.type === 'exit', 20000, 'exit');
        assert.equal(exit.code, 0);
      } finally {
        again.destroy();
      }
      vm.end();
      const r = await vm.result;
      assert.deepEqual(r.exit, { code: 0, message: 'success' });
    });
  });

  test('stop: a program that ignores SIGTERM is SIGKILLed after timeout_ms; a host disconnect kills sessions', async () => {
    let stopMs;
    const r = await boot('stop-kill', {
      cfg: { argv: ['/bin/sh', '-c', "trap '' TERM; echo ready; while :; do sleep 0.1; done"] },
      agent: async ({ sock, dir, waitConsole }) => {
        const first = new AgentClient(sock);
        await first.wait((m) => m.type === 'started');
        await waitConsole('ready');
        const s = first.exec({ command: ['sleep', '1000'] });
        assert.equal((await s.started).type, 'exec_started');
        // The host goes away: the session is killed. A new connection sees it gone.
        sock.destroy();
        await sleep(300);
        const again = await connectUnix(join(dir, 'agent.sock'), Date.now() + 5000);
        try {
          const agent = new AgentClient(again);
          let left;
          for (let i = 0; i < 30; i++) {
            const ps = agent.exec({ command: ['ps', '-o', 'pid,args'] });
            assert.equal((await ps.exit).code, 0);
            left = ps.stdout().split('\n').filter((l) => l.includes('sleep 1000'));
            if (!left.length) break;
            await sleep(100);
          }
          assert.deepEqual(left, []);
          const t0 = performance.now();
          agent.send({ type: 'stop', timeout_ms: 1000 });
          const exit = await agent.wait((m) => m.type === 'exit', 20000, 'exit');
          stopMs = performance.now() - t0;
          assert.deepEqual({ code: exit.code, message: exit.message }, { code: 137, message: 'killed by signal 9 (SIGKILL)' });
        } finally {
          again.destroy();
        }
      },
    });
    assert.deepEqual(r.exit, { code: 137, message: 'killed by signal 9 (SIGKILL)' });
    assert.ok(stopMs >= 950 && stopMs < 5000, `stop took ${stopMs} ms`);
  });
});
