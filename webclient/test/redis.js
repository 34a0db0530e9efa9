// A redis-server of the test's own, for cluster mode (issue 13):
// crossing.test.js and balancer.test.js run gateways that share it.

import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';

export const REDIS = process.env.REDIS_SERVER || 'redis-server';

// redisUnavailable says why no redis-server can run here, or '' when one
// can.
export function redisUnavailable() {
  const redis = spawnSync(REDIS, ['--version'], { encoding: 'utf8' });
  return redis.error ? `no redis-server (${REDIS}) on PATH: run scripts/deps.sh` : '';
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Running redis-servers, killed if this process exits without stopping
// them.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

// startRedis runs a redis-server of the test's own on a free loopback
// port, without persistence. Returns { url, log(), stop() }.
export async function startRedis(dir) {
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  const child = spawn(REDIS, ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let log = '';
  child.stdout.setEncoding('utf8').on('data', (b) => (log += b));
  child.stderr.setEncoding('utf8').on('data', (b) => (log += b));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const pong = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.setTimeout(1000, () => c.destroy());
      c.on('error', () => resolve(false));
      c.on('close', () => resolve(false));
      c.on('data', (d) => {
        resolve(String(d).startsWith('+PONG'));
        c.destroy();
      });
      c.on('connect', () => c.write('PING\r\n'));
    });
    if (pong) break;
    if (Date.now() > deadline) throw new Error(`redis-server did not answer PING on port ${port}:\n${log}`);
    await sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      running.delete(child);
    },
  };
}
