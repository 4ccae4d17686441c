// bench/standby: standby, restore and fork against a cold boot and against
// the raw QEMU command line restoring the same saved state, for a 256MB and
// a 1GB guest (1 vCPU, busybox, network off) whose program keeps running:
//
//   cold boot: POST /instances -> the program's first line in logs/app.log
//   standby:   POST /instances/{id}/standby round trip
//   restore:   POST /instances/{id}/restore round trip (the guest runs; its
//              clock request is queued on the agent channel); the counter
//              must go on. A warm restore: the bench waits until the VMM
//              the daemon starts after each standby is waiting for the state
//              (src/instance/warm.c, "warm restore ready" in the instance's
//              operations log), as a restore some time after a standby finds
//              it; the host memory (PSS) of that waiting VMM is reported
//   fork:      POST /instances/{id}/fork {from_running: true} round trip,
//              once the spare fork the one before had prepared is ready
//              (src/instance/spare.c, "spare fork ready"); the first fork,
//              which finds none, is reported apart, with the spare's PSS;
//              and forks of the source in standby to Running, which take
//              a whole copy made ready (fork - restore for both)
//   raw:       the instance's vmm.cmdline on copies of its memory file,
//              state and disks, with `-incoming defer` and no -S: process
//              start -> QMP up -> migrate-set-capabilities x-ignore-shared
//              -> migrate-incoming exec:cat STATE -> query-status polled
//              until "paused" (the state was saved paused, so QEMU does not
//              start it by itself) -> cont -> "running". The same QMP steps
//              the daemon takes, without its bookkeeping: QEMU 7.2 has no
//              command-line switch for x-ignore-shared.
//
// Also the memory file's allocated size after standby and the sizes of a
// plain and a zstd-compressed Standby snapshot. Prints each run, a table,
// PASS/MISS per target (restore <= 0.2 x cold boot, ours/raw restore <=
// 0.5, fork <= restore + 20 ms) and one JSON summary line. Exits non-zero
// only on errors.
// Usage: node bench/standby.mjs [runs]   (or BENCH_RUNS=N; default 5)
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, existsSync, mkdtempSync, rmSync, statSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, relative } from 'node:path';

const RUNS = Number(process.argv[2] || process.env.BENCH_RUNS || 5);
process.env.HYPEMAN_BIN_DIR ||= join(process.cwd(), 'build/rel/bin');
const { startDaemon } = await import('../tests/harness/daemon.mjs');
const { waitImage, pull } = await import('../tests/harness/images.mjs');
const { waitState, readLogs } = await import('../tests/harness/instances.mjs');
const { startRegistry, pushFixtures } = await import('../tests/registry/registry.mjs');

const SIZES = ['256MB', '1GB'];
const TARGET_RESTORE_VS_BOOT = 0.2;
const TARGET_OURS_VS_RAW = 0.5;
const TARGET_FORK_OVER_RESTORE_MS = 20;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const msSince = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const mib = (b) => (b / 1048576).toFixed(1);

// The program: a counter line every 0.2 s, tagged so a reboot would show.
const program = (mark) => ['sh', '-c', `i=0; while :; do i=$((i+1)); echo "tick ${mark} $i end"; sleep 0.2; done`];
const TICK = /^tick (\S+) (\d+) end\r?$/;
const ticks = (text) => text.split('\n').map((l) => TICK.exec(l)).filter(Boolean).map((m) => ({ mark: m[1], n: Number(m[2]) }));

async function waitFor(what, pred, timeoutMs = 60000, everyMs = 2) {
  const t0 = process.hrtime.bigint();
  for (;;) {
    const v = pred();
    if (v) return v;
    if (msSince(t0) > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
const readText = (f) => (existsSync(f) ? readFileSync(f, 'utf8') : '');

// Split one line of shell_join() (src/vmm/qemu.c) back into argv.
function shellSplit(line) {
  const out = [];
  let cur = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error('unbalanced quote in vmm.cmdline');
      cur = (cur ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (c === '\\' && i + 1 < line.length) {
      cur = (cur ?? '') + line[++i];
    } else if (c === ' ' || c === '\t' || c === '\n') {
      if (cur !== null) out.push(cur);
      cur = null;
    } else {
      cur = (cur ?? '') + c;
    }
  }
  if (cur !== null) out.push(cur);
  return out;
}

// A minimal QMP client on a unix socket: connect (retrying until the socket
// answers), negotiate, then execute() one command at a time.
async function qmpConnect(path, child, deadlineMs) {
  const t0 = process.hrtime.bigint();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('qemu exited before QMP was up');
    const sock = await new Promise((res) => {
      const s = net.connect(path);
      s.once('connect', () => res(s));
      s.once('error', () => { s.destroy(); res(null); });
    });
    if (sock) {
      let buf = '';
      const waiting = [];
      const msgs = [];
      sock.on('data', (d) => {
        buf += d;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const m = JSON.parse(line);
          if (m.event) continue;
          if (waiting.length) waiting.shift().res(m); else msgs.push(m);
        }
      });
      sock.on('close', () => { for (const w of waiting.splice(0)) w.rej(new Error('QMP closed')); });
      const next = () => (msgs.length ? Promise.resolve(msgs.shift()) : new Promise((res, rej) => waiting.push({ res, rej })));
      await next(); // greeting
      const execute = async (cmd, args) => {
        sock.write(JSON.stringify(args ? { execute: cmd, arguments: args } : { execute: cmd }) + '\n');
        const r = await next();
        if (r.error) throw new Error(`QMP ${cmd}: ${r.error.desc}`);
        return r.return;
      };
      await execute('qmp_capabilities');
      return { execute, close: () => sock.destroy() };
    }
    if (msSince(t0) > deadlineMs) throw new Error(`no QMP on ${path}`);
    await sleep(1);
  }
}

// Restore the standby instance in `dir` by hand: copies of its files in a
// temp dir, its command line pointed there, timed to "running".
async function rawRestore(dir) {
  const argv = shellSplit(readFileSync(join(dir, 'run/vmm.cmdline'), 'utf8'));
  const copy = mkdtempSync(join(tmpdir(), 'bench-restore-'));
  let q;
  try {
    // Every file of the instance the command line names (memory, disks),
    // plus the device state; logs and sockets get fresh places.
    const files = new Set(['memory.ram', 'vm.state']);
    for (const a of argv) {
      for (const part of a.split(/[,=]/)) {
        if (part.startsWith(dir + '/') && existsSync(part) && statSync(part).isFile()) {
          const rel = relative(dir, part);
          if (!rel.startsWith('logs/') && !rel.startsWith('run/')) files.add(rel);
        }
      }
    }
    for (const f of files) {
      mkdirSync(dirname(join(copy, f)), { recursive: true });
      execFileSync('cp', ['--sparse=always', join(dir, f), join(copy, f)]);
    }
    mkdirSync(join(copy, 'logs'), { recursive: true });
    mkdirSync(join(copy, 'run'), { recursive: true });
    const args = [];
    for (let i = 1; i < argv.length; i++) {
      if (argv[i] === '-incoming') { i++; continue; } // `-incoming defer` of an earlier restore
      if (argv[i] === '-S') continue;
      // A cold-booted VM ran on a RAM file on tmpfs; standby moved it to the
      // instance's memory.ram, which is what a restore loads.
      args.push(argv[i].split(dir + '/').join(copy + '/').replace(/mem-path=[^,]*/, `mem-path=${join(copy, 'memory.ram')}`));
    }
    args.push('-incoming', 'defer');
    if (args.some((a) => a.includes(dir + '/'))) throw new Error('raw restore: a path of the instance is left in the command line');
    let stderr = '';
    const t0 = process.hrtime.bigint();
    q = spawn(argv[0], args, { stdio: ['ignore', 'ignore', 'pipe'] });
    q.stderr.on('data', (d) => { stderr += d; });
    let ms;
    try {
      const qmp = await qmpConnect(join(copy, 'run/qmp.sock'), q, 30000);
      // QEMU 7.2 has no command-line switch for x-ignore-shared, so it is
      // set over QMP before the load, as the daemon does.
      await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
      await qmp.execute('migrate-incoming', { uri: `exec:cat '${join(copy, 'vm.state')}'` });
      for (;;) {
        const st = await qmp.execute('query-status');
        if (st.status === 'running') { ms = msSince(t0); break; }
        // The state was saved paused (standby stops the guest first), so
        // QEMU stays paused after the load whatever -S says: resume it.
        if (st.status === 'paused') { await qmp.execute('cont'); continue; }
        if (st.status !== 'inmigrate' && st.status !== 'prelaunch') throw new Error(`raw restore: qemu is ${st.status}`);
        if (msSince(t0) > 30000) throw new Error('raw restore: not running after 30 s');
        await sleep(1);
      }
      qmp.close();
    } catch (e) {
      throw new Error(`${e.message}\nqemu stderr: ${stderr}`);
    }
    return ms;
  } finally {
    if (q && q.exitCode === null && q.signalCode === null) {
      const gone = new Promise((res) => q.once('exit', res));
      q.kill('SIGKILL');
      await gone;
    }
    rmSync(copy, { recursive: true, force: true });
  }
}

const reg = await startRegistry();
await pushFixtures(reg);
const d = await startDaemon({ env: { LOG_LEVEL: 'info' } });
const token = d.token();
const image = `${reg.host}/test/busybox:latest`;
await pull(d, token, { name: image });
await waitImage(d, token, image);

const api = async (method, path, body, want) => {
  const r = await d.fetch(path, {
    method, token,
    ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  if (want && r.status !== want) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
};
const made = new Set(); // instance ids still to delete
const snaps = new Set();
const del = async (id) => { await api('DELETE', `/instances/${id}`); made.delete(id); };

const results = [];
let failed = null;
try {
  for (const size of SIZES) {
    const tag = size.toLowerCase();
    const r = { size, boot: [], standby: [], restore: [], fork: [], raw: [], save_ms: [], running_ms: [], counter: [], warm_pss_kb: [], warm_wait_ms: [] };
    results.push(r);

    // 1. Cold boots; the last instance stays for the rest.
    let src, dir, mark;
    for (let run = 1; run <= RUNS; run++) {
      mark = `SB${tag}-${run}-${Date.now()}`;
      const t0 = process.hrtime.bigint();
      const inst = await api('POST', '/instances', { name: `sb-${tag}-${run}`, image, size, vcpus: 1, cmd: program(mark) }, 201);
      made.add(inst.id);
      const idir = join(d.dataDir, 'instances', inst.id);
      const line = `tick ${mark} 1 end`;
      await waitFor(`${line} in app.log`, () => readText(join(idir, 'logs/app.log')).includes(line));
      r.boot.push(msSince(t0));
      console.log(`${size} boot ${run}: ${r.boot.at(-1).toFixed(0)} ms`);
      if (run < RUNS) await del(inst.id); else { src = inst; dir = idir; }
    }
    await waitState(d, token, src.id, ['Running']);
    const app = join(dir, 'logs/app.log');
    const lastTick = () => ticks(readText(app)).filter((t) => t.mark === mark).reduce((m, t) => Math.max(m, t.n), 0);
    await waitFor('the counter to reach 3', () => lastTick() >= 3, 30000, 50);

    // 2., 3. and 5.: standby / restore cycles; raw restores during the first standby.
    let opsMark = 0;
    const opsFile = join(dir, 'logs/hypeman.log');
    for (let run = 1; run <= RUNS; run++) {
      const before = lastTick();
      let t0 = process.hrtime.bigint();
      await api('POST', `/instances/${src.id}/standby`, {}, 200);
      r.standby.push(msSince(t0));
      if (run === 1) {
        const st = statSync(join(dir, 'memory.ram'));
        r.mem = { apparent_bytes: st.size, allocated_bytes: st.blocks * 512, state_bytes: statSync(join(dir, 'vm.state')).size };
        for (let i = 1; i <= RUNS; i++) {
          r.raw.push(await rawRestore(dir));
          console.log(`${size} raw qemu restore ${i}: ${r.raw.at(-1).toFixed(0)} ms`);
        }
      }
      // The VMM the daemon starts for the restore (warm.c): ready, and what it costs the host.
      const w = await waitFor('the warm restore VMM', () => /msg="warm restore ready" pid=(\d+) ms=([\d.]+)/.exec(readText(opsFile).slice(opsMark)), 30000, 5);
      opsMark = readText(opsFile).length;
      r.warm_wait_ms.push(Number(w[2]));
      const rollup = readText(`/proc/${w[1]}/smaps_rollup`);
      const pss = /^Pss:\s+(\d+) kB/m.exec(rollup);
      if (pss) r.warm_pss_kb.push(Number(pss[1]));
      const from = readText(app).length;
      t0 = process.hrtime.bigint();
      await api('POST', `/instances/${src.id}/restore`, {}, 200);
      r.restore.push(msSince(t0));
      const first = await waitFor('a counter line after the restore', () => ticks(readText(app).slice(from))[0], 30000, 10);
      const ok = first.mark === mark && first.n > before;
      r.counter.push({ before, after: first.n, ok });
      console.log(`${size} cycle ${run}: standby ${r.standby.at(-1).toFixed(0)} ms, restore ${r.restore.at(-1).toFixed(0)} ms, ` +
        `counter ${before} -> ${first.n}${first.mark === mark ? '' : ` (${first.mark}, a new run!)`} ${ok ? 'ok' : 'NOT CONTINUED'}`);
      // Let it run a little, so the next standby saves a guest that moved on.
      await waitFor('the counter to move on', () => lastTick() > first.n, 30000, 20);
    }
    const ops = (await readLogs(d, token, src.id, { source: 'hypeman', tail: 1000 })).join('\n');
    r.save_ms = [...ops.matchAll(/msg=standby save_ms=([\d.]+)/g)].map((m) => Number(m[1]));
    r.standby_total_ms = [...ops.matchAll(/msg=standby save_ms=[^\n]* total_ms=([\d.]+)/g)].map((m) => Number(m[1]));
    // The first standby of a cold-booted VM also moves its RAM from tmpfs to disk.
    r.move_ms = [...ops.matchAll(/msg=standby save_ms=[\d.]+ move_ms=([\d.]+) moved_bytes=([1-9]\d*)/g)].map((m) => ({ ms: Number(m[1]), bytes: Number(m[2]) }));
    r.running_ms = [...ops.matchAll(/msg=restored running_ms=([\d.]+)/g)].map((m) => Number(m[1]));
    r.warm = [...ops.matchAll(/msg=restored running_ms=[\d.]+ warm=(\w+)/g)].map((m) => m[1]);


    // 4. Forks of the running source. The first finds no spare (spare.c):
    // it is reported apart. Each later one is made once the spare the one
    // before had prepared is ready ("spare fork ready" in the source's
    // operations log), as a fork some time after the previous finds it.
    for (let run = 0; run <= RUNS; run++) {
      if (run > 0 && !process.env.SPARE_FORKS?.startsWith('0')) {
        const sp = await waitFor('the spare fork', () => /msg="spare fork ready" spare=\S+ pid=(\d+) [^\n]*ms=([\d.]+)\n/.exec(readText(opsFile).slice(opsMark)), 30000, 5);
        opsMark = readText(opsFile).length;
        const rollup = readText(`/proc/${sp[1]}/smaps_rollup`);
        (r.spare_pss_kb ??= []).push(Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? NaN));
        (r.spare_ready_ms ??= []).push(Number(sp[2]));
      }
      const t0 = process.hrtime.bigint();
      const f = await api('POST', `/instances/${src.id}/fork`, { name: `sb-${tag}-fork-${run}`, from_running: true }, 201);
      const took = msSince(t0);
      if (run === 0) r.fork_first = took; else r.fork.push(took);
      made.add(f.id);
      // Where a fork's time goes, from its operations log.
      const fops = readText(join(d.dataDir, 'instances', f.id, 'logs/hypeman.log'));
      const num = (re) => Number(re.exec(fops)?.[1] ?? NaN);
      const part = {
        copy_ms: num(/msg="forked" [^\n]*copy_ms=([\d.]+)/),
        // The fork's VMM starts while its files are copied (standby.c): its start, and
        // how long the copy then still waited for it.
        vmm_start_ms: num(/msg="VMM started during the copy" [^\n]*ms=([\d.]+)/),
        vmm_wait_ms: num(/vmm_wait_ms=([\d.]+)/),
        warm: /msg=restored [^\n]*warm=(\w+)/.exec(fops)?.[1] ?? null,
        restore_ms: num(/msg=restored running_ms=([\d.]+)/),
        identity_ms: num(/ identity_ms=([\d.]+)/),
        // ... of which: until the agent channel was up, then the guest's answer
        identity_connect_ms: num(/identity_connect_ms=([\d.]+)/),
        identity_answer_ms: num(/identity_answer_ms=([\d.]+)/),
        spare: /msg="forked" [^\n]*spare=(\w+)/.exec(fops)?.[1] ?? null,
      };
      // The source's side: how long it was paused, of which the device state's save.
      const sops = readText(opsFile).slice(opsMark);
      part.paused_ms = Number(/msg="copied while running" paused_ms=([\d.]+)/.exec(sops)?.[1] ?? NaN);
      part.save_ms = Number(/msg="copied while running" [^\n]*save_ms=([\d.]+)/.exec(sops)?.[1] ?? NaN);
      if (run === 0) r.fork_first_parts = part; else (r.fork_parts ??= []).push(part);
      console.log(`${size} fork ${run}${run === 0 ? ' (first, no spare)' : ''}: ${took.toFixed(0)} ms (${f.state}); ${JSON.stringify(part)}`);
      await del(f.id);
    }

    // 6. Forks of the source in standby, to Running, each once its spare is
    // ready: a spare of a sleeping source is a whole copy (spare.c).
    await api('POST', `/instances/${src.id}/standby`, {}, 200);
    opsMark = readText(opsFile).length;
    for (let run = 0; run <= RUNS; run++) {
      if (run > 0 && !process.env.SPARE_FORKS?.startsWith('0')) {
        await waitFor('the spare fork of the sleeping source', () => /msg="spare fork ready" spare=\S+ pid=\d+ of=Standby/.exec(readText(opsFile).slice(opsMark)), 30000, 5);
        opsMark = readText(opsFile).length;
      }
      const t0 = process.hrtime.bigint();
      const f = await api('POST', `/instances/${src.id}/fork`, { name: `sb-${tag}-sfork-${run}`, target_state: 'Running' }, 201);
      const took = msSince(t0);
      made.add(f.id);
      const fops = readText(join(d.dataDir, 'instances', f.id, 'logs/hypeman.log'));
      const spare = /msg="forked" [^\n]*spare=(\w+)/.exec(fops)?.[1] ?? null;
      if (run > 0) { (r.sfork ??= []).push(took); (r.sfork_spare ??= []).push(spare); }
      console.log(`${size} fork of the sleeping source ${run}${run === 0 ? ' (first, no spare)' : ''}: ${took.toFixed(0)} ms (${f.state}); spare=${spare}`);
      await del(f.id);
    }
    await api('POST', `/instances/${src.id}/restore`, {}, 200);

    // 7. Snapshot sizes: plain, then zstd level 1.
    const plain = await api('POST', `/instances/${src.id}/snapshots`, { kind: 'Standby', name: `sb-${tag}-plain` }, 201);
    snaps.add(plain.id);
    const zst = await api('POST', `/instances/${src.id}/snapshots`,
      { kind: 'Standby', name: `sb-${tag}-zstd`, compression: { enabled: true, algorithm: 'zstd', level: 1 } }, 201);
    snaps.add(zst.id);
    r.snapshot = {
      plain_size_bytes: plain.size_bytes,
      zstd_size_bytes: zst.size_bytes,
      zstd_compressed_size_bytes: zst.compressed_size_bytes,
      zstd_uncompressed_size_bytes: zst.uncompressed_size_bytes,
    };
    for (const s of [plain.id, zst.id]) { await api('DELETE', `/snapshots/${s}`); snaps.delete(s); }
    await del(src.id);
  }
} catch (e) {
  failed = e;
} finally {
  for (const s of snaps) await d.fetch(`/snapshots/${s}`, { method: 'DELETE', token }).catch(() => {});
  for (const id of made) await d.fetch(`/instances/${id}`, { method: 'DELETE', token }).catch(() => {});
  await d.stop();
  await reg.stop();
}
if (failed) {
  console.error(`bench/standby failed: ${failed.stack || failed}`);
  process.exit(1);
}

// The table and the targets.
const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '-');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const pass = (ok) => (ok ? 'PASS' : 'MISS');
console.log(`\nmedians of ${RUNS} runs (ms, client side):`);
console.log('size   | cold boot | standby | restore | raw qemu restore | fork | restore/boot     | ours/raw restore | fork - restore');
const summary = { runs: RUNS, sizes: {} };
let counterOk = true;
for (const r of results) {
  const m = { boot: median(r.boot), standby: median(r.standby), restore: median(r.restore), raw: median(r.raw), fork: median(r.fork) };
  const vsBoot = m.restore / m.boot, vsRaw = m.restore / m.raw, forkOver = m.fork - m.restore;
  const cont = r.counter.every((c) => c.ok);
  counterOk &&= cont;
  console.log(`${r.size.padEnd(6)} | ${f0(m.boot).padStart(9)} | ${f0(m.standby).padStart(7)} | ${f0(m.restore).padStart(7)} | ` +
    `${f0(m.raw).padStart(16)} | ${f0(m.fork).padStart(4)} | ${f2(vsBoot)} (<= ${TARGET_RESTORE_VS_BOOT}) ${pass(vsBoot <= TARGET_RESTORE_VS_BOOT)} | ` +
    `${f2(vsRaw)} (<= ${TARGET_OURS_VS_RAW}) ${pass(vsRaw <= TARGET_OURS_VS_RAW)} | ` +
    `${f0(forkOver)} (<= ${TARGET_FORK_OVER_RESTORE_MS}) ${pass(forkOver <= TARGET_FORK_OVER_RESTORE_MS)}`);
  console.log(`       warm restores: ${r.warm.filter((x) => x === 'yes').length} of ${r.warm.length}; the waiting VMM was ready ` +
    `${f0(median(r.warm_wait_ms))} ms after the standby and holds ${r.warm_pss_kb.length ? (median(r.warm_pss_kb) / 1024).toFixed(1) : '-'} MiB PSS`);
  const part = (k) => median((r.fork_parts ?? []).map((p) => p[k]).filter(Number.isFinite));
  console.log(`       fork (medians): save and copy ${f0(part('copy_ms'))} ms (the source paused ${f0(part('paused_ms'))} ms, its device state saved in ${f0(part('save_ms'))} ms); ` +
    (Number.isFinite(part('vmm_start_ms')) ? `its VMM, started meanwhile, took ${f0(part('vmm_start_ms'))} ms (the copy waited ${f0(part('vmm_wait_ms'))} ms more for it); ` : 'its VMM was the spare\'s; ') +
    `restore ${f0(part('restore_ms'))} ms, ` +
    (Number.isFinite(part('identity_ms'))
      ? `identity ${f0(part('identity_ms'))} ms (channel up after ${f0(part('identity_connect_ms'))} ms, the guest's answer ${f0(part('identity_answer_ms'))} ms)`
      : 'identity sent after the hello, not waited for (no network)'));
  const sfork = median(r.sfork ?? []);
  console.log(`       fork of the source in standby, to Running: ${f0(sfork)} ms (${(r.sfork_spare ?? []).filter((x) => x === 'whole').length} of ` +
    `${(r.sfork ?? []).length} took a whole spare); fork - restore ${f0(sfork - m.restore)} (<= ${TARGET_FORK_OVER_RESTORE_MS}) ${pass(sfork - m.restore <= TARGET_FORK_OVER_RESTORE_MS)}`);
  console.log(`       spare forks: ${(r.fork_parts ?? []).filter((p) => p.spare === 'yes').length} of ${(r.fork_parts ?? []).length} forks took one; ` +
    `each was ready ${f0(median(r.spare_ready_ms ?? []))} ms after the fork before and its VMM holds ` +
    `${r.spare_pss_kb?.length ? (median(r.spare_pss_kb) / 1024).toFixed(1) : '-'} MiB PSS; the first fork (none ready) took ${f0(r.fork_first)} ms ` +
    `(save and copy ${f0(r.fork_first_parts?.copy_ms)} ms)`);
  console.log(`       daemon's own log (medians): standby save ${f0(median(r.save_ms))} ms, total ${f0(median(r.standby_total_ms))} ms; ` +
    `restore to running ${f0(median(r.running_ms))} ms`);
  if (r.move_ms.length) console.log(`       first standby moved the RAM from tmpfs to disk: ${(r.move_ms[0].bytes / 1048576).toFixed(1)} MiB in ${f0(r.move_ms[0].ms)} ms`);
  console.log(`       memory.ram after standby: ${mib(r.mem.allocated_bytes)} MiB allocated of ${mib(r.mem.apparent_bytes)} MiB; ` +
    `vm.state ${(r.mem.state_bytes / 1024).toFixed(0)} KiB`);
  console.log(`       snapshots: plain ${mib(r.snapshot.plain_size_bytes)} MiB on disk; zstd-1 ${mib(r.snapshot.zstd_size_bytes)} MiB on disk, ` +
    `memory ${mib(r.snapshot.zstd_compressed_size_bytes)} MiB compressed of ${mib(r.snapshot.zstd_uncompressed_size_bytes)} MiB`);
  console.log(`       counter continued after every restore: ${cont ? 'yes' : `NO (${JSON.stringify(r.counter.filter((c) => !c.ok))})`}`);
  summary.sizes[r.size] = {
    ...Object.fromEntries(Object.entries(m).map(([k, v]) => [`${k}_ms`, Math.round(v * 10) / 10])),
    restore_vs_boot: Math.round(vsBoot * 1000) / 1000, restore_vs_boot_target: TARGET_RESTORE_VS_BOOT, restore_vs_boot_pass: vsBoot <= TARGET_RESTORE_VS_BOOT,
    ours_vs_raw: Math.round(vsRaw * 1000) / 1000, ours_vs_raw_target: TARGET_OURS_VS_RAW, ours_vs_raw_pass: vsRaw <= TARGET_OURS_VS_RAW,
    fork_minus_restore_ms: Math.round(forkOver * 10) / 10, fork_minus_restore_target_ms: TARGET_FORK_OVER_RESTORE_MS,
    fork_minus_restore_pass: forkOver <= TARGET_FORK_OVER_RESTORE_MS,
    warm_restores: r.warm.filter((x) => x === 'yes').length, warm_ready_after_standby_ms: median(r.warm_wait_ms),
    warm_vmm_pss_kb: r.warm_pss_kb.length ? median(r.warm_pss_kb) : null,
    fork_of_standby_ms: sfork ?? null, fork_of_standby_minus_restore_ms: Number.isFinite(sfork) ? Math.round((sfork - m.restore) * 10) / 10 : null,
    fork_of_standby_pass: Number.isFinite(sfork) && sfork - m.restore <= TARGET_FORK_OVER_RESTORE_MS,
    fork_first_ms: r.fork_first ?? null, fork_first_copy_ms: r.fork_first_parts?.copy_ms ?? null,
    fork_spares_taken: (r.fork_parts ?? []).filter((p) => p.spare === 'yes').length,
    spare_ready_ms: median(r.spare_ready_ms ?? []) ?? null, spare_vmm_pss_kb: r.spare_pss_kb?.length ? median(r.spare_pss_kb) : null,
    fork_copy_ms: part('copy_ms'), fork_source_paused_ms: part('paused_ms'), fork_save_ms: part('save_ms'), fork_vmm_start_ms: part('vmm_start_ms'), fork_vmm_wait_ms: part('vmm_wait_ms'), fork_restore_ms: part('restore_ms'), fork_identity_ms: part('identity_ms'),
    fork_identity_connect_ms: part('identity_connect_ms'), fork_identity_answer_ms: part('identity_answer_ms'),
    daemon_save_ms: median(r.save_ms), daemon_standby_total_ms: median(r.standby_total_ms),
    daemon_running_ms: median(r.running_ms), daemon_first_move: r.move_ms[0] ?? null,
    counter_continued: cont, counter: r.counter,
    memory_ram: r.mem, snapshot: r.snapshot,
  };
}
console.log('raw qemu restore: process start -> QMP query-status "running"; -incoming defer without -S, then QMP x-ignore-shared + migrate-incoming exec:cat STATE, poll to paused, cont');
console.log(`JSON ${JSON.stringify(summary)}`);
if (!counterOk) console.log('note: the counter did not continue after some restore (reported, not an error exit)');
