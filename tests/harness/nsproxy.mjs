// Run inside a network namespace (`ip netns exec NS node nsproxy.mjs SOCK HOST PORT`):
// accept on the unix socket SOCK (a path, which every namespace sees) and
// connect each client to HOST:PORT inside the namespace. The harness puts a
// TCP listener on the host's loopback in front of it, so a daemon that runs
// in a test's namespace is reachable at an ordinary http://127.0.0.1 URL.
import net from 'node:net';
import { rmSync } from 'node:fs';

const [sock, host, port] = process.argv.slice(2);
rmSync(sock, { force: true });
net.createServer((c) => {
  const u = net.connect({ host, port: Number(port) });
  c.pipe(u).pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
}).listen(sock, () => process.stdout.write('ready\n'));
