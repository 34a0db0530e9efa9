// Test helpers shared by the browser tests: a static file server for
// dist/ on loopback and a headless Chromium (Debian's) driven by
// playwright-core. The gateway tests will use the same launcher against
// the real binary.

import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const webclientDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const distDir = path.join(webclientDir, 'dist');

// The browser: Debian's package, never a download.
export const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// Flags: headless, no sandbox (containers, root), a fake microphone that
// needs no permission prompt, nothing that phones home, and host names
// resolving to nothing but loopback so no test can reach the internet.
// Loopback ICE candidates and real (not mDNS) host addresses let a browser
// and a gateway on 127.0.0.1 reach each other.
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-domain-reliability',
  '--disable-client-side-phishing-detection',
  '--disable-breakpad',
  '--metrics-recording-only',
  '--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,WebRtcHideLocalIpsWithMdns',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

// pageCSP is the Content-Security-Policy the gateway sends with the page
// (webclient.go, setPageHeaders): the static server sends it too, so that
// a page that breaks it fails here first. Keep the two in step.
export function pageCSP(host) {
  return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    `media-src 'self' blob: mediastream:; connect-src 'self' ws://${host} wss://${host}; ` +
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

// startStaticServer serves root on 127.0.0.1 at a free port. routes maps a
// path to a function (req, res) that answers it instead of a file (e.g.
// '/config.json'). A WebSocket upgrade is refused unless onUpgrade handles
// it, which is what an unreachable gateway looks like to the page.
// Returns { url, close() }.
export async function startStaticServer({ root = distDir, routes = {}, onUpgrade } = {}) {
  const server = http.createServer(async (req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    if (routes[pathname]) return routes[pathname](req, res);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    const rel = pathname === '/' ? 'index.html' : decodeURIComponent(pathname.slice(1));
    const file = path.join(root, rel);
    if (!file.startsWith(root + path.sep) || path.basename(file).startsWith('.')) {
      res.writeHead(404).end();
      return;
    }
    try {
      if (!(await stat(file)).isFile()) throw new Error('not a file');
      const body = await readFile(file);
      const headers = {
        'Content-Type': CONTENT_TYPES[path.extname(file)] || 'application/octet-stream',
        'Cache-Control': 'no-store',
      };
      if (file.endsWith('.html')) headers['Content-Security-Policy'] = pageCSP(req.headers.host);
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    }
  });
  server.on('upgrade', (req, socket, head) => {
    if (onUpgrade) onUpgrade(req, socket, head);
    else socket.destroy();
  });
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// launchBrowser starts Chromium and returns { browser, newPage(options),
// close() }. Playwright gives each launch a new temporary profile
// (user-data-dir) and deletes it on close; each newPage is in a context
// of its own, with its own storage, like a separate person's browser.
// env adds to Chromium's environment: { HOME } of a test CA (testca.js)
// makes it trust that CA.
export async function launchBrowser({ viewport = { width: 360, height: 740 }, args = [], env = {} } = {}) {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [...chromiumArgs, ...args],
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
  return {
    browser,
    async newPage(options = {}) {
      const context = await browser.newContext({ viewport, serviceWorkers: 'block', ...options });
      const page = await context.newPage();
      page.on('close', () => context.close().catch(() => {}));
      return page;
    },
    async close() {
      await browser.close().catch(() => {});
    },
  };
}

// watchPage collects what would otherwise go unnoticed: uncaught errors and
// console errors of a page, and requests to anywhere but loopback and the
// host names of hosts (which the test maps to loopback).
export function watchPage(page, { hosts = [] } = {}) {
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('request', (req) => {
    const { hostname, protocol } = new URL(req.url());
    if ((protocol === 'http:' || protocol === 'https:' || protocol === 'ws:' || protocol === 'wss:') &&
        hostname !== '127.0.0.1' && hostname !== 'localhost' && hostname !== '[::1]' && !hosts.includes(hostname)) {
      problems.push(`request off loopback: ${req.url()}`);
    }
  });
  return problems;
}

// traceWebSocket notes each WebSocket of page, and the SIP messages
// (text frames) it sends and receives, with note(line): for the failure
// report of a test.
export function traceWebSocket(page, note) {
  page.on('websocket', (ws) => {
    note(`=== WebSocket ${ws.url()}`);
    ws.on('framesent', (f) => note(`>>> sent\n${f.payload}`));
    ws.on('framereceived', (f) => note(`<<< received\n${f.payload}`));
    ws.on('close', () => note('=== WebSocket closed'));
  });
}

// failureReport returns err with what a browser test saw attached: for
// each of pages ({ label, page, problems, trace }) what state(page)
// returns, its problems and its SIP over WebSocket (traceWebSocket); each
// sipp's command, exit, output and message trace (test/sipp.js
// startSipp); the gateway's log of the test, when there is one gateway;
// and each of logs ({ heading: text }: other gateways, redis-server, a
// balancer's connections).
export async function failureReport(err, { pages, sipps = [], state, gatewayLog, logs = {} }) {
  const parts = [String(err && err.stack ? err.stack : err)];
  for (const p of pages) {
    let st = '(page closed)';
    try {
      st = JSON.stringify(await state(p.page));
    } catch {
      // closed or crashed
    }
    parts.push(`--- page ${p.label}: state ${st}`);
    if (p.problems.length) parts.push(`--- page ${p.label}: problems\n${p.problems.join('\n')}`);
    parts.push(`--- page ${p.label}: SIP over WebSocket\n${p.trace.join('\n').replace(/\r\n/g, '\n')}`);
  }
  for (const s of sipps) {
    parts.push(`--- sipp ${s.label}: ${s.command}\n--- exit ${JSON.stringify(s.exited)}\n${s.output()}`);
    parts.push(`--- sipp ${s.label}: -trace_msg\n${(await s.trace()).replace(/\r\n/g, '\n')}`);
  }
  if (gatewayLog !== undefined) parts.push(`--- gateway log of this test ---\n${gatewayLog}`);
  for (const [heading, text] of Object.entries(logs)) parts.push(`--- ${heading} ---\n${text}`);
  const e = new Error(parts.join('\n'));
  e.cause = err;
  return e;
}

// relayWebSocket routes page's WebSockets to the gateway (the path ending
// in /ws) through the test, as a TCP relay would: relay.sockets are its
// connections, each { sent, received } (the SIP messages, as text), and
// relay.cut() drops the latest one at both ends, as a network change does.
// note(line) is told what happens. Call it before page.goto.
export async function relayWebSocket(page, relay, note = () => {}) {
  relay.sockets = [];
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    const conn = { sent: [], received: [], closed: false };
    relay.sockets.push(conn);
    note(`=== relayed WebSocket #${relay.sockets.length}`);
    const close = () => {
      if (conn.closed) return;
      conn.closed = true;
      server.close();
      ws.close({ code: 4000, reason: 'cut' });
    };
    conn.cut = () => {
      note(`=== the test cuts relayed WebSocket #${relay.sockets.indexOf(conn) + 1}`);
      close();
    };
    ws.onMessage((m) => {
      conn.sent.push(String(m));
      server.send(m);
    });
    server.onMessage((m) => {
      conn.received.push(String(m));
      ws.send(m);
    });
    ws.onClose(close);
    server.onClose(close);
  });
  relay.cut = () => relay.sockets.at(-1).cut();
}

// waitFor polls probe (every 100 ms, for at most timeout ms) until
// predicate holds of what it returns, and returns that; else it throws,
// naming what and the last value. The page's CSP forbids string
// expressions, so tests read the page's state rather than await in it.
export async function waitFor(what, probe, predicate, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  let v;
  while (Date.now() < deadline) {
    v = await probe();
    if (v && predicate(v)) return v;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
}

// softphoneState, waitState and waitStats read the softphone page
// (window.softphone): its state, and its call's getStats() summary.
export const softphoneState = (page) => page.evaluate(() => window.softphone.state);

export async function waitState(page, predicate, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let s;
  while (Date.now() < deadline) {
    s = await softphoneState(page);
    if (predicate(s)) return s;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${predicate}; state: ${JSON.stringify(s)}`);
}

export async function waitStats(page, predicate, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let s;
  while (Date.now() < deadline) {
    s = await page.evaluate(() => window.softphone.getStats());
    if (s && predicate(s)) return s;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out waiting for ${predicate}; stats: ${JSON.stringify(s)}`);
}

// recordPeerConnections, given to page.addInitScript, runs in the page
// before its scripts: it keeps the page's RTCPeerConnections in
// window.__pagedriverPCs, where a test finds them, since neither the
// softphone nor SIP.js keeps one for its callers after a call.
export function recordPeerConnections() {
  const Native = window.RTCPeerConnection;
  const all = [];
  Object.defineProperty(window, '__pagedriverPCs', { value: all });
  window.RTCPeerConnection = new Proxy(Native, {
    construct(target, args) {
      const pc = new target(...args);
      all.push(pc);
      return pc;
    },
  });
}

// sipjsBundle is SIP.js (npm sip.js) as one script that sets window.SIP,
// for a test to load into a page of the gateway's origin.
export async function sipjsBundle() {
  const esbuild = await import('esbuild');
  const out = await esbuild.build({
    stdin: { contents: "import * as SIP from 'sip.js'; window.SIP = SIP;", resolveDir: webclientDir },
    bundle: true,
    format: 'iife',
    write: false,
    logLevel: 'silent',
  });
  return out.outputFiles[0].text;
}
