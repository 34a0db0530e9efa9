// A headless Chromium driven over stdin and stdout, for tests in other
// languages: test/e2e (Go) runs it inside a network namespace of its
// simulated internet, where the browser loads the gateway's softphone over
// HTTPS. It trusts one test CA (through an NSS database under --home) and
// resolves only the host names it is given:
//
//   node test/pagedriver.js --home DIR --ca CA.pem --hosts sip.example.net=203.0.113.10,...
//
// It prints {"ready":true} once Chromium runs, then answers one JSON
// request a line with one JSON line, {"id", "value"} or {"id", "error"}:
//
//   {"id":1,"op":"open","page":"a","url":"https://sip.example.net/?autoanswer=1"}
//        a new page (its own browser context) loads url; resolves once the
//        softphone is up (window.softphone.state), with the HTTP status
//   {"id":2,"op":"eval","page":"a","expr":"window.softphone.register('alice','pw')"}
//        evaluates expr in the page; a promise is awaited; the value is JSON
//   {"id":3,"op":"problems","page":"a"}   uncaught errors, console errors and
//        requests to hosts other than those of --hosts, so far
//   {"id":4,"op":"trace","page":"a"}      the page's SIP over WebSocket, as text
//   {"id":5,"op":"ice","page":"a"}        the ICE candidate pairs of the page's
//        latest RTCPeerConnection, as its getStats tells them: the selected
//        pair, and every pair with its state (null before any call)
//   {"id":6,"op":"close","page":"a"}
//
// It closes the browser and exits when stdin ends. Chromium's own logs go
// to stderr.

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { launchBrowser, recordPeerConnections, traceWebSocket } from './helpers.js';
import { trustCA } from './testca.js';

const OPEN_TIMEOUT_MS = 15_000;

const { values: opts } = parseArgs({
  options: { home: { type: 'string' }, ca: { type: 'string' }, hosts: { type: 'string', default: '' } },
});
if (!opts.home || !opts.ca) {
  process.stderr.write('pagedriver: --home and --ca are required\n');
  process.exit(2);
}

// hosts maps the names the browser may resolve to their addresses.
const hosts = new Map();
for (const pair of opts.hosts.split(',').filter(Boolean)) {
  const [name, addr] = pair.split('=');
  if (!name || !addr) {
    process.stderr.write(`pagedriver: --hosts wants name=address pairs, not ${pair}\n`);
    process.exit(2);
  }
  hosts.set(name, addr);
}

await trustCA(opts.home, opts.ca);
// Every name but those given resolves to nothing: the last rule wins
// over helpers.js's loopback-only rules. The rules apply to address
// literals too, and Chromium's ICE-TCP connects by "resolving" the
// remote candidate's address: the addresses given are let through as
// themselves, or an ICE-TCP connection fails with ERR_NAME_NOT_RESOLVED.
const addrs = [...new Set(hosts.values())];
const rules = [
  ...[...hosts].map(([name, addr]) => `MAP ${name} ${addr}`),
  ...addrs.map((addr) => `EXCLUDE ${addr}`),
  'MAP * ~NOTFOUND',
].join(', ');
const browser = await launchBrowser({ env: { HOME: opts.home }, args: [`--host-resolver-rules=${rules}`, ...(process.env.PAGEDRIVER_ARGS || '').split(' ').filter(Boolean)] });

const pages = new Map();

// icePairs summarises the ICE candidate pairs of the latest
// RTCPeerConnection of the page; it runs in the page.
async function icePairs() {
  const pcs = window.__pagedriverPCs || [];
  const pc = pcs[pcs.length - 1];
  if (!pc) return null;
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  const cand = (id) => {
    const c = byId.get(id);
    if (!c) return null;
    return { type: c.candidateType, protocol: c.protocol, relayProtocol: c.relayProtocol || '', address: `${c.address}:${c.port}` };
  };
  let selected = null;
  let transport = null;
  const pairs = [];
  report.forEach((s) => {
    if (s.type === 'transport') {
      // Datagrams that reach the transport but no inbound-rtp are
      // packets the browser could not decrypt.
      transport = { dtlsState: s.dtlsState || '', srtpCipher: s.srtpCipher || '', packetsReceived: s.packetsReceived || 0, bytesReceived: s.bytesReceived || 0 };
    }
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const p = byId.get(s.selectedCandidatePairId);
      if (p) selected = { state: p.state, nominated: !!p.nominated, local: cand(p.localCandidateId), remote: cand(p.remoteCandidateId) };
    }
    if (s.type === 'candidate-pair') {
      pairs.push({ state: s.state, nominated: !!s.nominated, local: cand(s.localCandidateId), remote: cand(s.remoteCandidateId) });
    }
  });
  return { connectionState: pc.connectionState, transport, selected, pairs };
}

function watch(page) {
  const entry = { page, problems: [], trace: [] };
  const t0 = Date.now();
  const note = (line) => entry.trace.push(`+${((Date.now() - t0) / 1000).toFixed(3)}s ${line}`);
  page.on('pageerror', (err) => entry.problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    // The softphone's first request for TURN credentials is answered
    // with a Digest challenge, which Chromium reports as a failed load.
    const { url } = msg.location();
    if (/status of 401/.test(msg.text()) && url && new URL(url).pathname === '/api/ice-servers') return;
    entry.problems.push(`console error: ${msg.text()}${url ? ` (${url})` : ''}`);
  });
  page.on('request', (req) => {
    const { hostname, protocol } = new URL(req.url());
    if (/^(https?|wss?):$/.test(protocol) && !hosts.has(hostname)) entry.problems.push(`request to an unknown host: ${req.url()}`);
  });
  traceWebSocket(page, note);
  return entry;
}

function pageOf(name) {
  const entry = pages.get(name);
  if (!entry) throw new Error(`no page ${name}`);
  return entry;
}

async function handle(req) {
  switch (req.op) {
    case 'open': {
      if (pages.has(req.page)) throw new Error(`page ${req.page} is open already`);
      const page = await browser.newPage();
      await page.addInitScript(recordPeerConnections);
      const entry = watch(page);
      pages.set(req.page, entry);
      const res = await page.goto(req.url, { timeout: OPEN_TIMEOUT_MS });
      await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, { timeout: OPEN_TIMEOUT_MS });
      return res ? res.status() : 0;
    }
    case 'eval':
      return await pageOf(req.page).page.evaluate(req.expr);
    case 'problems':
      return pageOf(req.page).problems;
    case 'ice':
      return await pageOf(req.page).page.evaluate(icePairs);
    case 'trace':
      return pageOf(req.page).trace.join('\n').replace(/\r\n/g, '\n');
    case 'close': {
      const entry = pageOf(req.page);
      pages.delete(req.page);
      await entry.page.close();
      return null;
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(req.op)}`);
  }
}

function reply(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

reply({ ready: true });
const lines = createInterface({ input: process.stdin });
const inFlight = new Set();
lines.on('line', (line) => {
  let req;
  try {
    req = JSON.parse(line);
  } catch (err) {
    reply({ id: null, error: `not JSON: ${err.message}` });
    return;
  }
  const p = handle(req).then(
    (value) => reply({ id: req.id, value: value === undefined ? null : value }),
    (err) => reply({ id: req.id, error: String(err && err.stack ? err.stack : err) }),
  );
  inFlight.add(p);
  p.finally(() => inFlight.delete(p));
});
lines.on('close', async () => {
  await Promise.allSettled([...inFlight]);
  await browser.close();
  process.exit(0);
});
