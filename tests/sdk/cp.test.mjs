// The official SDK's lib/cp (@onkernel/hypeman 0.28.0, unmodified):
// cpToInstance and cpFromInstance round-trip files of the sizes that used to
// race (the SDK resolved on a separate final marker before it had written the
// last file) and a tree, byte-exact, with their modes, and the guest's mtimes
// on the way out. Each size is copied several times so that a race shows.
// Our CLI's `hypeman cp` reads the same stream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Hypeman from '@onkernel/hypeman';
import { cpFromInstance, cpToInstance } from '@onkernel/hypeman/lib/cp';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, client, cfg, inst, work;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  const token = d.token();
  client = new Hypeman({ baseURL: d.url, apiKey: token, maxRetries: 0, timeout: 120000 });
  cfg = { baseURL: d.url, apiKey: token };
  const image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  assert.equal((await waitImage(d, token, image)).img.status, 'ready');
  inst = await client.instances.create({ name: 'cp-sdk', image, size: '256MB', vcpus: 1, cmd: ['sh', '-c', 'mkdir -p /in; exec sleep 100000'] });
  await client.instances.wait(inst.id, { state: 'Running', timeout: '90s' });
  work = mkdtempSync(join(tmpdir(), 'hm-sdk-cp-'));
});
after(async () => {
  if (work) rmSync(work, { recursive: true, force: true });
  await d?.stop();
  await reg?.stop();
});

const sha = (b) => createHash('sha256').update(b).digest('hex');
const guest = async (cmd) => {
  const r = await runCli(['exec', inst.id, 'sh', '-c', cmd], { env: { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: cfg.apiKey } });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
};

const SIZES = [0, 1, 32 * 1024 - 1, 32 * 1024, 32 * 1024 + 1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, (1 << 20) + 7, 24 << 20];

test('files of every size that raced: in with cpToInstance, out with cpFromInstance, byte-exact, modes and mtimes kept', { timeout: 600000 }, async () => {
  for (const size of SIZES) {
    const data = randomBytes(size);
    const name = `f-${size}`;
    const src = join(work, name);
    writeFileSync(src, data);
    chmodSync(src, 0o640);
    await cpToInstance(cfg, { instanceId: inst.id, srcPath: src, dstPath: `/in/${name}` });
    assert.equal(await guest(`sha256sum /in/${name} | cut -d' ' -f1; stat -c %a /in/${name}`), `${sha(data)}\n640`, `${name} in the guest`);
    const guestMtime = Number(await guest(`stat -c %Y /in/${name}`));
    const rounds = size > (4 << 20) ? 3 : 5;
    for (let i = 0; i < rounds; i++) {
      const out = mkdtempSync(join(work, `out-${size}-`));
      await cpFromInstance(cfg, { instanceId: inst.id, srcPath: `/in/${name}`, dstPath: out });
      // Resolved: the file must be whole now, not later.
      const got = readFileSync(join(out, name));
      assert.equal(got.length, size, `${name}, round ${i + 1}: ${got.length} of ${size} bytes`);
      assert.equal(sha(got), sha(data), `${name}, round ${i + 1}: bytes differ`);
      const st = statSync(join(out, name));
      assert.equal(st.mode & 0o777, 0o640, `${name}: mode`);
      assert.equal(Math.floor(st.mtimeMs / 1000), guestMtime, `${name}: mtime`);
      rmSync(out, { recursive: true, force: true });
    }
  }
});

test('a tree: nested directories, empty and large files, a symlink, round-trip whole', { timeout: 300000 }, async () => {
  const tree = join(work, 'tree');
  const files = { 'a.txt': randomBytes(10), 'empty': Buffer.alloc(0), 'sub/b.bin': randomBytes(70000), 'sub/deeper/c.bin': randomBytes(200000), 'sub/deeper/last': randomBytes(65537) };
  for (const [p, b] of Object.entries(files)) {
    mkdirSync(join(tree, p, '..'), { recursive: true });
    writeFileSync(join(tree, p), b);
  }
  await cpToInstance(cfg, { instanceId: inst.id, srcPath: tree, dstPath: '/in/tree' });
  await guest('ln -sf a.txt /in/tree/link');
  for (let i = 0; i < 5; i++) {
    const out = mkdtempSync(join(work, 'tree-out-'));
    await cpFromInstance(cfg, { instanceId: inst.id, srcPath: '/in/tree', dstPath: out });
    for (const [p, b] of Object.entries(files)) {
      const got = readFileSync(join(out, 'tree', p));
      assert.equal(got.length, b.length, `round ${i + 1}: ${p}`);
      assert.equal(sha(got), sha(b), `round ${i + 1}: ${p}`);
    }
    assert.deepEqual(readdirSync(join(out, 'tree')).sort(), ['a.txt', 'empty', 'link', 'sub']);
    rmSync(out, { recursive: true, force: true });
  }
  // Our CLI reads the same framing, into a new name.
  const r = await runCli(['cp', `${inst.id}:/in/tree`, join(work, 'cli-tree')], { env: { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: cfg.apiKey } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(sha(readFileSync(join(work, 'cli-tree/sub/deeper/last'))), sha(files['sub/deeper/last']));
});

test('a missing path rejects with the guest\'s error', async () => {
  await assert.rejects(cpFromInstance(cfg, { instanceId: inst.id, srcPath: '/in/no-such', dstPath: work }), /Copy error at .*no-such|No such file/i);
});
