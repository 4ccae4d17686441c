// Test harness: starts the real hypeman-api (the ASan+UBSan build unless
// HYPEMAN_BIN_DIR says otherwise) on a free port with a fresh data dir,
// mints tokens with the real hypeman-token, and on stop() sends SIGTERM and
// checks that the daemon exits cleanly (a sanitizer report is a failure).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN_DIR = process.env.HYPEMAN_BIN_DIR || join(ROOT, 'build/san/bin');
export const bin = (name) => join(BIN_DIR, name);
// The guest kernel `make setup` fetched (scripts/kernel.sh), shared by every test daemon.
export const KERNEL_DIR = process.env.HYPEMAN_KERNEL_DIR || join(ROOT, '.data/system/kernel/current');

const SAN_ENV = {
  ASAN_OPTIONS: 'abort_on_error=0:exitcode=86:detect_leaks=1',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1:exitcode=87',
};

// netns: run the daemon inside that (test-made) network namespace, with its
// networking on; the URL then leads there through nsproxy.mjs. Without it the
// daemon runs here with NETWORK_ENABLED=false, so no test touches the host's
// network.
export async function startDaemon({ env = {}, args = [], netns } = {}) {
  const dataDir = env.DATA_DIR || mkdtempSync(join(tmpdir(), 'hypeman-test-'));
  const [cmd, argv] = netns ? ['ip', ['netns', 'exec', netns, bin('hypeman-api'), ...args]] : [bin('hypeman-api'), args];
  const child = spawn(cmd, argv, {
    env: { ...process.env, ...SAN_ENV, PORT: '0', LISTEN_ADDR: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'debug', KERNEL_DIR, NETWORK_ENABLED: netns ? 'true' : 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const onData = (d) => { log += d.toString(); };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));

  const port = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`daemon did not start in 30s:\n${log}`)), 30000);
    const check = () => {
      const m = log.match(/msg="listening" addr=[\d.]+:(\d+)/);
      if (m) { clearTimeout(timer); res(Number(m[1])); }
    };
    child.stderr.on('data', check);
    child.on('exit', (code) => { clearTimeout(timer); rej(new Error(`daemon exited ${code} before listening:\n${log}`)); });
  });

  let url = `http://127.0.0.1:${port}`;
  let proxy, front;
  const conns = new Set();
  if (netns) {
    const sock = join(dataDir, 'nsproxy.sock');
    proxy = spawn('ip', ['netns', 'exec', netns, process.execPath, join(ROOT, 'tests/harness/nsproxy.mjs'), sock, '127.0.0.1', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((res, rej) => { proxy.stdout.once('data', res); proxy.once('exit', (c) => rej(new Error(`nsproxy exited ${c}`))); });
    front = net.createServer((c) => {
      conns.add(c);
      c.on('close', () => conns.delete(c));
      const u = net.connect(sock);
      c.pipe(u).pipe(c);
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
    });
    await new Promise((res) => front.listen(0, '127.0.0.1', res));
    url = `http://127.0.0.1:${front.address().port}`;
  }
  const closeProxy = () => { front?.close(); for (const c of conns) c.destroy(); proxy?.kill('SIGKILL'); };
  const d = {
    url, port, dataDir, child, netns,
    get log() { return log; },
    token(opts = {}) { return mintToken({ dataDir, env, ...opts }); },
    async fetch(path, { token, ...init } = {}) {
      const headers = { ...(init.headers || {}) };
      if (token) headers.authorization = `Bearer ${token}`;
      return fetch(url + path, { ...init, headers });
    },
    // SIGKILL, as a crash would: nothing runs in the daemon on the way out.
    async kill9() {
      child.kill('SIGKILL');
      await exited;
      closeProxy();
    },
    // SIGTERM, wait, and return the exit status; throws on an unclean exit.
    // Unless the data is kept for another daemon, the instances go first:
    // their VMs would otherwise outlive the daemon (as they are meant to)
    // and the test that started them.
    async stop({ keepData = false } = {}) {
      if (!keepData && child.exitCode === null && child.signalCode === null) {
        const t = mintToken({ dataDir, env });
        const r = await d.fetch('/instances', { token: t }).catch(() => null);
        if (r?.status === 200) {
          for (const i of await r.json()) await d.fetch(`/instances/${i.id}`, { method: 'DELETE', token: t }).catch(() => null);
        }
      }
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      let timer;
      const timeout = new Promise((res) => { timer = setTimeout(() => res(null), 20000); });
      const st = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      closeProxy();
      if (!st) { child.kill('SIGKILL'); throw new Error(`daemon ignored SIGTERM for 20s:\n${log}`); }
      if (!keepData) {
        killVmsOf(dataDir); // a daemon that crashed could not delete its instances
        removeMemoryDirOf(dataDir); // nor their RAM files on tmpfs
        rmSync(dataDir, { recursive: true, force: true });
      }
      if (st.code !== 0) throw new Error(`daemon exited with ${st.code ?? st.signal}:\n${log}`);
      return st;
    },
  };
  return d;
}

// The daemon's tmpfs folder for guest RAM (src/instance/memory.c) names its
// data dir in a `data_dir` file.
function removeMemoryDirOf(dataDir) {
  let entries = [];
  try { entries = readdirSync('/dev/shm'); } catch { return; }
  for (const e of entries) {
    if (!e.startsWith('hypeman-')) continue;
    try {
      if (readFileSync(join('/dev/shm', e, 'data_dir'), 'utf8') === dataDir) rmSync(join('/dev/shm', e), { recursive: true, force: true });
    } catch { /* not one of ours */ }
  }
}

// SIGKILL the VMM processes of a test data dir (their command lines name it).
function killVmsOf(dataDir) {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd;
    try { cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8'); } catch { continue; }
    if (cmd.startsWith('qemu-system') && (cmd.includes(`${dataDir}/instances/`) || cmd.includes(`${dataDir}/bases/`))) {
      try { process.kill(Number(e), 'SIGKILL'); } catch { /* already gone */ }
    }
  }
}

export function mintToken({ dataDir, env = {}, sub = 'test', scopes, duration } = {}) {
  const args = ['--data-dir', dataDir, '--sub', sub];
  if (scopes) args.push('--scopes', scopes.join(','));
  if (duration) args.push('--duration', duration);
  return execFileSync(bin('hypeman-token'), args, {
    env: { ...process.env, ...SAN_ENV, JWT_SECRET: '', ...env },
    encoding: 'utf8',
  }).trim();
}

// Run the CLI; resolves {code, stdout, stderr}, never throws on a non-zero exit.
// tty: run it on a pseudo-terminal (util-linux `script`), as a user's shell would.
export function runCli(args, { env = {}, input, tty = false } = {}) {
  const quote = (a) => `'${a.replaceAll("'", "'\\''")}'`;
  const [cmd, argv] = tty
    ? ['script', ['-qec', [bin('hypeman'), ...args].map(quote).join(' '), '/dev/null']]
    : [bin('hypeman'), args];
  return new Promise((res) => {
    const child = spawn(cmd, argv, {
      env: { ...process.env, ...SAN_ENV, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    if (input !== undefined) child.stdin.end(input); else child.stdin.end();
    child.on('exit', (code) => res({ code, stdout, stderr }));
  });
}
