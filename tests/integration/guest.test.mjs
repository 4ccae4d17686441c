// The guest contract (docs/guest.md) end to end: real QEMU microVMs (TCG)
// booting the fetched guest kernel with an initrd around the real
// hypeman-init, a busybox root disk made with mkfs.erofs, an ext4 overlay
// disk and a config disk written here by the contract's rules. Checks what
// the program sees (argv, env, user, workdir, hostname), the exit record for
// each way a program ends, overlay persistence across boots, a broken config
// disk, the agent channel (boot/started/exit, ping, signal) and the ACPI
// power button. Every boot has a hard timeout and its QEMU is killed by PID;
// at most two boots run at once.
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
    'hostname', 'true', 'false', 'sync', 'ps', 'grep', 'mount', 'head'];
  for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n');
  writeFileSync(join(dir, 'notexec'), '#!/bin/sh\necho never\n');
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

async function bootNow(name, { cfg, cfgBytes, overlay, debug = false, agent, qmp = false }) {
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
  }, BOOT_TIMEOUT_MS);

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
  assert.ok(!timedOut, `${name}: QEMU did not exit within ${BOOT_TIMEOUT_MS} ms; console:\n${consoleText}`);
  return { console: consoleText, exit: readExit(cfgPath), code, signal, ms, stderr, dir, overlay: ov };
}

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
});
