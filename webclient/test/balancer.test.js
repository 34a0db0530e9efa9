// A browser behind a load balancer outlives the instance it was on (issue
// 13, point 4): two gateways of one cluster share a redis-server, and a
// TCP load balancer the test runs (below) stands in front of both under
// one name, sip.cluster.test, which Chromium resolves to 127.0.0.2. The
// softphone page, its /config.json and its WebSocket all come through the
// balancer, which sends each new connection to the first gateway of its
// list that accepts it, so alice lands on gateway 1. Gateway 1 is killed
// with SIGKILL: her WebSocket drops, JsSIP reconnects by itself to the
// same URL, the balancer finds gateway 1 gone and sends her to gateway 2,
// and she registers there. A sipp phone then calls her at gateway 2; the
// page answers (?autoanswer=1) and the phone's audio reaches it.
//
// The gateways know the balancer's name only through
// SWITCHBOARD_WS_HOSTS (the WebSocket's Host); the page's origin is that
// same host, so SWITCHBOARD_WS_ORIGINS needs nothing.
//
// The same with SIP.js (npm sip.js, bundled here by esbuild into a page of
// the balancer's origin) in place of the softphone: its Web.SessionManager
// reconnects and registers again by itself.
//
// Run with `npm run test:gateway`. Needs sipp and redis-server.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildGateway, mustRun, DEFAULT_USERS, distBuilt, gatewayUnavailable, startGateway } from './gateway.js';
import {
  failureReport,
  launchBrowser,
  recordPeerConnections,
  sipjsBundle,
  traceWebSocket,
  waitFor,
  waitState,
  waitStats,
  watchPage,
} from './helpers.js';
import { redisUnavailable, startRedis } from './redis.js';
import { expectExit, killSipps, pcapCallerArgs, pcmuPcap, sippMissing, startSipp } from './sipp.js';

const USERS = { ...DEFAULT_USERS, 1000: 'pass1000' };
const NAME = 'sip.cluster.test';
const BALANCER_IP = '127.0.0.2';

function skipReason() {
  const missing = sippMissing() || redisUnavailable();
  if (missing) return missing;
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

// startBalancer listens on host at a free port and forwards each new
// TCP connection, whole, to the first of backends ([{ host, port }],
// which the caller may change) that accepts a connection: a dead backend
// refuses, and the next one is tried. It knows nothing of HTTP, so a
// WebSocket stays on the backend it was opened to until either end
// closes, and then the other end is closed too.
//
// Returns { port, backends, connections, close() }; connections lists
// each forwarded connection as { backend (index into backends, or -1 when
// none accepted), head (the first line the client sent) }.
async function startBalancer(host) {
  const backends = [];
  const connections = [];
  const sockets = new Set();
  const track = (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const server = net.createServer((client) => {
    track(client);
    const conn = { backend: -1, head: '' };
    connections.push(conn);
    client.on('data', (b) => {
      if (!conn.head) conn.head = String(b).split('\r\n')[0];
    });
    // What the client sends before a backend accepts is held back.
    const early = [];
    const onData = (b) => early.push(b);
    client.on('data', onData);
    client.on('error', () => {});
    const tryBackend = (i) => {
      if (client.destroyed) return;
      if (i >= backends.length) {
        client.destroy();
        return;
      }
      const upstream = net.connect(backends[i].port, backends[i].host);
      track(upstream);
      let connected = false;
      upstream.once('error', () => {
        if (connected) return; // after connect: 'close' ends both
        upstream.destroy();
        tryBackend(i + 1);
      });
      upstream.once('connect', () => {
        connected = true;
        conn.backend = i;
        upstream.on('error', () => {});
        client.off('data', onData);
        for (const b of early) upstream.write(b);
        client.pipe(upstream);
        upstream.pipe(client);
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
      });
    };
    tryBackend(0);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  return {
    port: server.address().port,
    backends,
    connections,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('a browser behind a load balancer moves to another gateway of the cluster', { skip: mustRun(skipReason()) }, () => {
  let build;
  let redis;
  let balancer;
  let browser;
  let bundle;
  let dir;
  let url;

  before(
    async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-balancer-'));
      await writeFile(path.join(dir, 'pcmu.pcap'), pcmuPcap(6));
      bundle = await sipjsBundle();
      redis = await startRedis(dir);
      balancer = await startBalancer(BALANCER_IP);
      url = `http://${NAME}:${balancer.port}`;
      build = await buildGateway();
      // The balancer's name leads to its address and nowhere else (the
      // last --host-resolver-rules wins over helpers.js's). A page over
      // http:// may use the microphone only from loopback names: this one
      // stands for https:// with a certificate.
      browser = await launchBrowser({
        args: [
          `--host-resolver-rules=MAP ${NAME} ${BALANCER_IP}, EXCLUDE ${BALANCER_IP}, EXCLUDE 127.0.0.1, EXCLUDE localhost, MAP * ~NOTFOUND`,
          `--unsafely-treat-insecure-origin-as-secure=${url}`,
        ],
      });
    },
    { timeout: 300_000 },
  );

  after(async () => {
    killSipps();
    await browser?.close();
    await balancer?.close();
    await redis?.stop();
    await build?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  // failover wraps a test body fn({ page, g1, g2, note, websockets }): it
  // starts two gateways of the cluster, puts them behind the balancer
  // (gateway 1 first), and opens a page whose SIP over WebSocket it
  // records. On failure the error gets the page's SIP, the balancer's
  // connections, sipp's output and the logs; at the end gateway 1 is
  // killed (if the body has not) and gateway 2 must stop cleanly.
  function failover(fn) {
    return async () => {
      const env = (rtp) => ({
        SWITCHBOARD_REDIS_URL: redis.url,
        SWITCHBOARD_WS_HOSTS: NAME,
        SWITCHBOARD_RTP_PORTS: rtp,
      });
      const g1 = await startGateway({ bin: build.bin, users: USERS, env: env('23000-23999') });
      let g2;
      try {
        g2 = await startGateway({ bin: build.bin, users: USERS, env: env('24000-24999') });
      } catch (err) {
        await g1.kill();
        throw err;
      }
      balancer.backends.length = 0;
      balancer.connections.length = 0;
      for (const g of [g1, g2]) {
        const [host, port] = g.httpAddr.split(':');
        balancer.backends.push({ host, port: Number(port) });
      }
      const page = await browser.newPage();
      const problems = watchPage(page, { hosts: [NAME] });
      const trace = [];
      const t0 = Date.now();
      const note = (line) => trace.push(`+${((Date.now() - t0) / 1000).toFixed(3)}s ${line}`);
      traceWebSocket(page, note);
      const websockets = () => balancer.connections.filter((c) => /^GET \/ws /.test(c.head));
      const sipps = [];
      const sipp = (label, args) => {
        const s = startSipp(label, args, { dir });
        sipps.push(s);
        return s;
      };
      let stopped;
      try {
        await fn({ page, g1, g2, note, problems, websockets, sipp });
      } catch (err) {
        // The page is the softphone, or SIP.js with its state in window.t.
        const state = (p) => p.evaluate(() => (window.t ? { ...window.t, sm: undefined, session: undefined } : window.softphone.state));
        throw await failureReport(err, {
          pages: [{ label: 'page', page, problems, trace }],
          sipps,
          state,
          logs: {
            'balancer connections': JSON.stringify(balancer.connections),
            'gateway 1 log': g1.log(),
            'gateway 2 log': g2.log(),
            'redis-server log': redis.log(),
          },
        });
      } finally {
        await page.close().catch(() => {});
        await Promise.all(sipps.map((s) => s.kill()));
        await g1.kill();
        stopped = await g2.stop();
      }
      assert.ok(stopped.clean, `gateway 2 did not stop cleanly on SIGTERM: ${JSON.stringify(stopped)}\n${g2.log()}`);
    };
  }

  // killFirst checks that everything so far went to gateway 1, the first
  // of the balancer's list, and kills it with SIGKILL.
  async function killFirst({ g1, note, websockets }) {
    assert.deepEqual(websockets().map((c) => c.backend), [0]);
    assert.ok(balancer.connections.every((c) => c.backend === 0), JSON.stringify(balancer.connections));
    const killed = await g1.kill();
    assert.equal(killed.signal, 'SIGKILL');
    note('=== the test killed gateway 1 (SIGKILL)');
  }

  // movedToSecond checks that the latest WebSocket went to gateway 2.
  function movedToSecond({ websockets }) {
    const ws = websockets();
    assert.ok(ws.length >= 2, JSON.stringify(balancer.connections));
    assert.equal(ws.at(-1).backend, 1, 'the new WebSocket went to gateway 2');
  }

  // call1000 has 1000 (sipp UAC, PCMU from a pcap) call user at gateway
  // 2 over UDP: SIP does not go through the web balancer.
  async function call1000(sipp, g2, user) {
    const args = await pcapCallerArgs({ callee: user, domain: g2.domain, password: USERS[1000] });
    return sipp('uac-1000', [...args, g2.sipUdp]);
  }

  test(
    'alice (softphone, JsSIP) on gateway 1, which is killed: she reconnects through the balancer to gateway 2, registers, and a call from 1000 (sipp) reaches her with audio',
    { timeout: 120_000 },
    failover(async (t) => {
      const { page, g2, problems, sipp } = t;
      const mark = g2.logMark();
      await page.goto(`${url}/?autoanswer=1`);
      await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, { timeout: 10_000 });
      assert.equal(
        await page.evaluate(([u, p]) => window.softphone.register(u, p), ['alice', USERS.alice]),
        'registered',
      );

      await killFirst(t);
      await waitState(page, (s) => s.registration !== 'registered', 10_000);
      // JsSIP tries again after 2 s or more, at the same URL; the
      // balancer finds gateway 1 gone and forwards to gateway 2.
      await waitState(page, (s) => s.registration === 'registered', 45_000);
      movedToSecond(t);

      const uac = await call1000(sipp, g2, 'alice');
      await waitState(page, (s) => s.call === 'active' && s.peer === '1000', 15_000);
      const stats = await waitStats(page, (s) => s.inbound?.packetsReceived >= 25 && s.inbound.audioLevel > 0.01, 10_000);
      assert.match(stats.codec || '', /PCMU/i, 'the phone offered PCMU alone');
      const end = await waitState(page, (s) => s.call === 'idle', 15_000);
      assert.equal(end.error, '');
      await expectExit(uac, 10_000, 'the UAC should get 200 for its BYE');
      assert.match(g2.logSince(mark), /msg="call answered" component=b2bua/);
      assert.deepEqual(problems, []);
    }),
  );

  test(
    'bob (SIP.js SessionManager) on gateway 1, which is killed: SIP.js reconnects through the balancer to gateway 2, registers, and a call from 1000 (sipp) reaches him with audio',
    { timeout: 120_000 },
    failover(async (t) => {
      const { page, g2, problems, sipp } = t;
      const mark = g2.logMark();
      // SIP.js in a page of the balancer's origin, so that the page's CSP
      // lets it load and connect.
      await page.route(`${url}/sipjs-test.js`, (route) =>
        route.fulfill({ status: 200, contentType: 'application/javascript', body: bundle }),
      );
      await page.addInitScript(recordPeerConnections);
      await page.goto(url);
      await page.addScriptTag({ url: '/sipjs-test.js' });
      await page.evaluate(
        async ([wsUrl, domain, user, password]) => {
          const { Web } = window.SIP;
          const t = { registered: false, connected: false, call: 'idle', session: null, events: [] };
          window.t = t;
          const event = (e) => t.events.push(e);
          const sm = new Web.SessionManager(wsUrl, {
            aor: `sip:${user}@${domain}`,
            userAgentOptions: {
              authorizationUsername: user,
              authorizationPassword: password,
              sessionDescriptionHandlerFactoryOptions: { iceGatheringTimeout: 1000 },
            },
            // Played, as a phone would: Chromium reports an audio level
            // only for audio it plays out.
            media: { constraints: { audio: true, video: false }, remote: { audio: document.body.appendChild(new Audio()) } },
            // Its own reconnection: 1 s apart, up to 30 times.
            reconnectionAttempts: 30,
            reconnectionDelay: 1,
            delegate: {
              onServerConnect: () => {
                t.connected = true;
                event('connected');
              },
              onServerDisconnect: () => {
                t.connected = false;
                t.registered = false;
                event('disconnected');
              },
              onRegistered: () => {
                t.registered = true;
                event('registered');
              },
              onUnregistered: () => {
                t.registered = false;
                event('unregistered');
              },
              onCallReceived: (session) => {
                t.session = session;
                t.call = 'incoming';
                sm.answer(session).catch((err) => event(`answer failed: ${err.message}`));
              },
              onCallAnswered: () => {
                t.call = 'active';
              },
              onCallHangup: () => {
                t.call = 'idle';
              },
            },
          });
          t.sm = sm;
          await sm.connect();
          await sm.register();
        },
        [`${url.replace(/^http/, 'ws')}/ws`, g2.domain, 'bob', USERS.bob],
      );
      const sipState = () => page.evaluate(() => ({ registered: window.t.registered, connected: window.t.connected, call: window.t.call, events: window.t.events }));
      await waitFor('bob registered', sipState, (s) => s.registered, 10_000);

      await killFirst(t);
      // SIP.js tries again at once, then 1 s apart: the page's events,
      // not a poll of its state, show the connection was lost.
      const again = (s) => s.registered && s.events.includes('disconnected') && s.events.lastIndexOf('registered') > s.events.indexOf('disconnected');
      await waitFor('bob registered again', sipState, again, 45_000);
      movedToSecond(t);

      const uac = await call1000(sipp, g2, 'bob');
      await waitFor('bob in a call', sipState, (s) => s.call === 'active', 15_000);
      const inbound = () =>
        page.evaluate(async () => {
          const pc = window.__pagedriverPCs.at(-1);
          if (!pc) return null;
          const found = { connectionState: pc.connectionState };
          (await pc.getStats()).forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'audio') Object.assign(found, { packetsReceived: s.packetsReceived, audioLevel: s.audioLevel });
          });
          return found;
        });
      await waitFor('audio from 1000', inbound, (s) => s.packetsReceived >= 25 && s.audioLevel > 0.01, 10_000);
      await waitFor('the call ended', sipState, (s) => s.call === 'idle', 15_000);
      await expectExit(uac, 10_000, 'the UAC should get 200 for its BYE');
      assert.match(g2.logSince(mark), /msg="call answered" component=b2bua/);
      // SIP.js logs the requests the lost connection failed as console
      // errors ("… | sip.transaction.nict | Not connected."): its own
      // words, not the page's.
      assert.deepEqual(problems.filter((p) => !/^console error: .* \| sip\.[\w.-]+ \| /.test(p)), []);
    }),
  );
});
