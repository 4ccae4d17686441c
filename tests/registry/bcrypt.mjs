// bcrypt ($2y$) in plain JS for the registry's htpasswd file: node has no
// bcrypt built in. Blowfish's initial P-array and S-boxes are the hex
// digits of pi, so they are computed here (Machin's formula on BigInts)
// instead of being pasted in as 1042 constants.
import { randomBytes } from 'node:crypto';

let INIT = null; // Uint32Array(18 + 1024): P then S0..S3

function piWords(n) {
  const bits = BigInt(n * 32 + 64);
  const one = 1n << bits;
  const atanInv = (x) => { // atan(1/x) * 2^bits
    const x2 = x * x;
    let term = one / x, sum = term;
    for (let k = 1n; term !== 0n; k++) {
      term /= x2;
      sum += (k & 1n ? -term : term) / (2n * k + 1n);
    }
    return sum;
  };
  const pi = 16n * atanInv(5n) - 4n * atanInv(239n);
  const frac = (pi - (3n << bits)) >> 64n; // n*32 bits after the point
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = Number((frac >> BigInt((n - 1 - i) * 32)) & 0xffffffffn);
  return out;
}

function encipher(P, S, lr) {
  let L = lr[0], R = lr[1];
  for (let i = 0; i < 16; i++) {
    L ^= P[i];
    const f = ((((S[L >>> 24] + S[256 | ((L >>> 16) & 0xff)]) | 0) ^ S[512 | ((L >>> 8) & 0xff)]) + S[768 | (L & 0xff)]) | 0;
    R ^= f;
    const t = L; L = R; R = t;
  }
  lr[0] = R ^ P[17];
  lr[1] = L ^ P[16];
}

function streamWord(buf, pos) {
  let w = 0;
  for (let i = 0; i < 4; i++) { w = (w << 8) | buf[pos.i]; pos.i = (pos.i + 1) % buf.length; }
  return w;
}

function expandKey(P, S, key, salt) {
  const kp = { i: 0 };
  for (let i = 0; i < 18; i++) P[i] ^= streamWord(key, kp);
  const sp = { i: 0 };
  const lr = new Int32Array(2);
  const fill = (arr, n) => {
    for (let i = 0; i < n; i += 2) {
      if (salt) { lr[0] ^= streamWord(salt, sp); lr[1] ^= streamWord(salt, sp); }
      encipher(P, S, lr);
      arr[i] = lr[0]; arr[i + 1] = lr[1];
    }
  };
  fill(P, 18);
  fill(S, 1024);
}

const B64 = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const STD = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const enc64 = (buf) => [...buf.toString('base64').replace(/=+$/, '')].map((c) => B64[STD.indexOf(c)]).join('');

// bcrypt hash of password; salt (16 bytes) random unless given. cost 4..31.
export function bcryptHash(password, { cost = 5, salt = randomBytes(16), prefix = '2y' } = {}) {
  if (!INIT) INIT = piWords(18 + 1024);
  const P = new Int32Array(INIT.buffer.slice(0, 18 * 4));
  const S = new Int32Array(INIT.buffer.slice(18 * 4));
  const key = Buffer.concat([Buffer.from(password, 'utf8'), Buffer.alloc(1)]).subarray(0, 72);
  expandKey(P, S, key, salt);
  for (let i = 0; i < 2 ** cost; i++) { expandKey(P, S, key, null); expandKey(P, S, salt, null); }
  const magic = Buffer.from('OrpheanBeholderScryDoubt');
  const ct = new Int32Array(6);
  for (let i = 0; i < 6; i++) ct[i] = magic.readInt32BE(i * 4);
  const lr = new Int32Array(2);
  for (let j = 0; j < 3; j++) {
    lr[0] = ct[2 * j]; lr[1] = ct[2 * j + 1];
    for (let i = 0; i < 64; i++) encipher(P, S, lr);
    ct[2 * j] = lr[0]; ct[2 * j + 1] = lr[1];
  }
  const out = Buffer.alloc(24);
  for (let i = 0; i < 6; i++) out.writeInt32BE(ct[i], i * 4);
  return `$${prefix}$${String(cost).padStart(2, '0')}$${enc64(salt)}${enc64(out.subarray(0, 23))}`;
}
