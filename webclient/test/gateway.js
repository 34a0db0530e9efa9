// The real gateway for the browser end-to-end tests: builds cmd/switchboard
// (unless SWITCHBOARD_BIN names a binary), runs it on loopback ports the
// system picks, with a temporary data directory and test accounts, waits
// for /readyz, keeps its log for failure reports, and stops it with SIGTERM.
//
//   const bin = await buildGateway();          // or SWITCHBOARD_BIN
//   const gw = await startGateway({ bin });    // gw.url, gw.wsUrl, gw.log()
//   ...
//   await gw.stop();                           // { code, signal, clean }
//   await gw.kill();                           // SIGKILL: a crash
//
// The binary embeds webclient/dist as it was when it was built: run
// `npm run build` first (`npm run test:gateway` does).

import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { webclientDir } from './helpers.js';

export const repoRoot = path.resolve(webclientDir, '..');

export const DEFAULT_USERS = Object.freeze({ alice: 'alice-secret', bob: 'bob-secret' });

const GO = process.env.GO || 'go';
const BUILD_TIMEOUT_MS = 240_000; // a cold module and build cache takes ~40 s
const STOP_TIMEOUT_MS = 15_000; // the gateway gives HTTP 10 s to drain
const MAX_LOG_CHARS = 4 << 20;

// mustRun turns a reason to skip into a failure when SWITCHBOARD_NO_SKIP
// is 1, as `make test` sets it: there a missing tool (sipp, nginx,
// redis-server, a built dist/) is a broken set-up, which scripts/deps.sh
// should have fixed, not a test to leave out in silence. Elsewhere the
// reason is returned for describe's skip option.
export function mustRun(reason) {
  if (reason && process.env.SWITCHBOARD_NO_SKIP === '1') {
    throw new Error(`cannot run: ${reason} (SWITCHBOARD_NO_SKIP=1, as make test sets it)`);
  }
  return reason || false;
}

// gatewayUnavailable says why no gateway can be had here, or '' when one
// can: a SWITCHBOARD_BIN that is not an executable file is an error, not a
// reason to skip.
export function gatewayUnavailable() {
  if (process.env.SWITCHBOARD_BIN) return '';
  const go = spawnSync(GO, ['version'], { encoding: 'utf8' });
  if (go.error || go.status !== 0) {
    return `no Go toolchain (${GO}) to build cmd/switchboard; put go on PATH or set SWITCHBOARD_BIN`;
  }
  return '';
}

// buildGateway returns { bin, cleanup() }: SWITCHBOARD_BIN when it is set,
// else a fresh `go build` of ./cmd/switchboard into a temporary directory
// (set SWITCHBOARD_RACE=1 to build it with the race detector).
export async function buildGateway() {
  const given = process.env.SWITCHBOARD_BIN;
  if (given) {
    const bin = path.resolve(given);
    try {
      accessSync(bin, fsConstants.X_OK);
    } catch {
      throw new Error(`SWITCHBOARD_BIN=${given}: not an executable file`);
    }
    return { bin, cleanup: async () => {} };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-bin-'));
  const bin = path.join(dir, 'switchboard');
  const args = ['build'];
  if (process.env.SWITCHBOARD_RACE === '1') args.push('-race');
  args.push('-o', bin, './cmd/switchboard');
  const { code, signal, output } = await run(GO, args, { cwd: repoRoot, timeout: BUILD_TIMEOUT_MS });
  if (code !== 0) {
    await rm(dir, { recursive: true, force: true });
    const why = signal ? `killed by ${signal} (timeout ${BUILD_TIMEOUT_MS / 1000} s?)` : `exit ${code}`;
    throw new Error(`${GO} ${args.join(' ')} (in ${repoRoot}) failed, ${why}:\n${output}`);
  }
  return { bin, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

// run runs a command to its end and returns its exit and combined output.
function run(cmd, args, { cwd, timeout }) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const add = (b) => {
      output += b;
    };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

// Running gateways, killed if this process exits without stopping them
// (a test runner that times out, an uncaught error).
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

// startGateway runs bin and resolves once GET /readyz answers 200. Every
// listener is on 127.0.0.1 at port 0, so the system picks free ports and
// nothing can take them between choosing and binding; the gateway's
// "listening" log line tells which. users maps user names to passwords;
// env adds or overrides SWITCHBOARD_* settings. The SWITCHBOARD_* variables
// of this process are not passed on (SWITCHBOARD_BIN is none of the
// gateway's, and a developer's own settings must not change the test).
//
// Returns { url, wsUrl, httpAddr, sipUdp, sipTcp, domain, dataDir, pid,
// log(), logMark(), logSince(mark), exited, kill(), stop() }.
// freeIcePort returns a port that was free a moment ago for UDP and TCP
// on 127.0.0.1 (the ICE port serves both, ICE-TCP on the same number).
async function freeIcePort() {
  for (let i = 0; i < 50; i++) {
    const udp = dgram.createSocket('udp4');
    const port = await new Promise((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve(udp.address().port));
    });
    const tcpFree = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    await new Promise((resolve) => udp.close(resolve));
    if (tcpFree) return port;
  }
  throw new Error('no port free for both UDP and TCP');
}

export async function startGateway({ bin, users = DEFAULT_USERS, env = {}, readyTimeoutMs = 15_000 } = {}) {
  if (!bin) throw new Error('startGateway: no bin (use buildGateway)');
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-data-'));
  const childEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('SWITCHBOARD_')) childEnv[k] = v;
  }
  Object.assign(childEnv, {
    SWITCHBOARD_HTTP: '127.0.0.1:0',
    SWITCHBOARD_SIP_UDP: '127.0.0.1:0',
    SWITCHBOARD_SIP_TCP: '127.0.0.1:0',
    SWITCHBOARD_DATA_DIR: dataDir,
    SWITCHBOARD_USERS: Object.entries(users)
      .map(([u, p]) => `${u}:${p}`)
      .join(','),
    SWITCHBOARD_LOG_LEVEL: 'debug',
    SWITCHBOARD_LOG_FORMAT: 'text',
    // Not the fixed default: other gateways (other tests, other checkouts
    // on the machine) may hold it.
    SWITCHBOARD_ICE_PORT: String(await freeIcePort()),
    ...env,
  });

  const child = spawn(bin, [], { cwd: dataDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let log = '';
  let dropped = 0;
  const append = (chunk) => {
    log += chunk;
    if (log.length > MAX_LOG_CHARS) {
      const cut = log.length - MAX_LOG_CHARS / 2;
      dropped += cut;
      log = log.slice(cut);
    }
  };
  child.stdout.setEncoding('utf8').on('data', append);
  child.stderr.setEncoding('utf8').on('data', append);
  // A binary that cannot be run says 'error' and never 'exit'.
  let spawnError = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
    child.on('error', (err) => {
      if (child.pid !== undefined) return; // a failed kill: the exit still comes
      spawnError = err;
      running.delete(child);
      resolve({ code: null, signal: null });
    });
  });
  let exit = null;
  exited.then((e) => {
    exit = e;
  });

  const fullLog = () => (dropped ? `[… ${dropped} characters of log dropped …]\n` : '') + log;
  const fail = async (why) => {
    if (!exit) {
      child.kill('SIGKILL');
      await exited;
    }
    await rm(dataDir, { recursive: true, force: true });
    return new Error(`switchboard (${bin}) ${why}\n--- gateway log ---\n${fullLog()}`);
  };

  // Wait for the listening line, then for /readyz.
  const deadline = Date.now() + readyTimeoutMs;
  let addrs = null;
  while (!addrs) {
    await sleep(25);
    if (spawnError) throw await fail(`did not start: ${spawnError.message}`);
    if (exit) throw await fail(`exited before it was ready (code ${exit.code}, signal ${exit.signal})`);
    if (Date.now() > deadline) throw await fail(`did not log "listening" within ${readyTimeoutMs} ms`);
    addrs = parseListening(log);
  }
  const url = `http://${addrs.http}`;
  for (;;) {
    if (exit) throw await fail(`exited before it was ready (code ${exit.code}, signal ${exit.signal})`);
    if (Date.now() > deadline) throw await fail(`GET ${url}/readyz did not answer 200 within ${readyTimeoutMs} ms`);
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      // not answering yet
    }
    await sleep(50);
  }

  let stopping = null;
  return {
    url,
    wsUrl: `ws://${addrs.http}/ws`,
    httpAddr: addrs.http,
    sipUdp: addrs.sipUdp,
    sipTcp: addrs.sipTcp,
    domain: childEnv.SWITCHBOARD_DOMAIN || 'localhost',
    dataDir,
    pid: child.pid,
    log: fullLog,
    // logMark and logSince cut out what one test logged.
    logMark: () => dropped + log.length,
    logSince: (mark) => (mark >= dropped ? log.slice(mark - dropped) : fullLog()),
    get exited() {
      return exit;
    },
    // kill sends SIGKILL, as a crash or a lost machine ends an instance
    // (no drain, no goodbye), waits for the exit and removes the data
    // directory. Returns { code, signal }.
    async kill() {
      if (!exit) child.kill('SIGKILL');
      const { code, signal } = await exited;
      await rm(dataDir, { recursive: true, force: true });
      return { code, signal };
    },
    // stop sends SIGTERM, waits for the exit (SIGKILL after 15 s) and
    // removes the data directory. clean is true when the gateway was
    // still running, then exited 0 on its own after logging "stopped".
    stop() {
      stopping ??= (async () => {
        const early = exit !== null;
        let killed = false;
        let timer;
        if (!early) {
          child.kill('SIGTERM');
          timer = setTimeout(() => {
            killed = true;
            child.kill('SIGKILL');
          }, STOP_TIMEOUT_MS);
        }
        const { code, signal } = await exited;
        clearTimeout(timer);
        await rm(dataDir, { recursive: true, force: true });
        return {
          code,
          signal,
          killed,
          exitedEarly: early,
          clean: !early && !killed && code === 0 && /msg=stopped/.test(log),
        };
      })();
      return stopping;
    },
  };
}

// parseListening reads the addresses of the gateway's "listening" line:
//   level=INFO msg=listening http=http://127.0.0.1:41234/ sip_udp=127.0.0.1:5060 sip_tcp=… ws=…
export function parseListening(log) {
  // Whole lines only: the last one may still be arriving.
  const line = log
    .slice(0, log.lastIndexOf('\n') + 1)
    .split('\n')
    .find((l) => /\bmsg=listening\b/.test(l));
  if (!line) return null;
  const field = (name) => {
    const m = new RegExp(`\\b${name}=("(?:[^"\\\\]|\\\\.)*"|\\S*)`).exec(line);
    if (!m) return '';
    return m[1].startsWith('"') ? JSON.parse(m[1]) : m[1];
  };
  const http = /^http:\/\/([^/]+)\/$/.exec(field('http'));
  if (!http) return null;
  return { http: http[1], sipUdp: field('sip_udp'), sipTcp: field('sip_tcp') };
}

// distBuilt reports whether webclient/dist holds the built page, which a
// binary built now embeds.
export function distBuilt() {
  return existsSync(path.join(webclientDir, 'dist', 'index.html'));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
