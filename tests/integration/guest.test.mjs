// The guest contract (docs/guest.md) end to end: real QEMU microVMs (TCG)
// booting the fetched guest kernel with an initrd around the real
// hypeman-init, a busybox root disk made with mkfs.erofs, an ext4 overlay
// disk and a config disk written here by the contract's rules. Checks what
// the program sees (argv, env, user, workdir, hostname), the exit record for
// each way a program ends, overlay persistence across boots, a broken config
// disk, the agent channel (boot/started/exit, ping, signal, stop, stat, exec
// sessions with pipes and with a pty, stdin, resize, kill, backpressure on
// large output) and the ACPI power button. Every boot has a hard timeout and
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
import { randomBytes } from 'node:crypto';
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
    'hostname', 'true', 'false', 'sync', 'ps', 'grep', 'mount', 'head', 'tr', 'tty', 'stty'];
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
}

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
