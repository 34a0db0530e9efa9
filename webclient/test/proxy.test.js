// The softphone behind a reverse proxy: nginx terminates TLS with a test
// CA's certificate (which Chromium trusts through an NSS database of its
// own) and passes the page, /config.json and SIP over WebSocket to the
// gateway's plain HTTP listener, from 127.0.0.2, the one trusted proxy
// (SWITCHBOARD_TRUSTED_PROXIES). Two pages load https://…/, register over
// wss://…/ws and call each other; the call carries audio both ways. The
// gateway believes nginx's X-Forwarded-For and X-Forwarded-Proto: the
// bindings name the browser's address and WSS.
//
// Run with `npm run test:gateway`. Needs nginx, openssl and certutil
// (scripts/deps.sh installs them): without them the test fails, saying so.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildGateway, mustRun, distBuilt, gatewayUnavailable, startGateway } from './gateway.js';
import { launchBrowser, waitFor, watchPage } from './helpers.js';
import { nginxUnavailable, startNginx } from './nginx.js';
import { makeTestCA, testCAUnavailable } from './testca.js';

const USERS = { alice: 'alice-secret', bob: 'bob-secret' };
const ADMIN_TOKEN = 'proxy-test-admin-token-0123456789';
const PROXY_SOURCE = '127.0.0.2';

function skipReason() {
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

describe('the softphone through nginx over HTTPS', { skip: mustRun(skipReason()) }, () => {
  let dir;
  let build;
  let gateway;
  let proxy;
  let browser;

  before(
    async () => {
      const missing = nginxUnavailable() || testCAUnavailable();
      if (missing) throw new Error(missing);
      dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-proxy-'));
      const ca = await makeTestCA(path.join(dir, 'ca'), ['127.0.0.1', 'localhost']);
      build = await buildGateway();
      gateway = await startGateway({
        bin: build.bin,
        users: USERS,
        env: { SWITCHBOARD_TRUSTED_PROXIES: PROXY_SOURCE, SWITCHBOARD_ADMIN_TOKEN: ADMIN_TOKEN },
      });
      proxy = await startNginx({
        dir: path.join(dir, 'nginx'),
        listen: `127.0.0.1:${await freePort()}`,
        upstream: gateway.httpAddr,
        bind: PROXY_SOURCE,
        ...ca,
      });
      browser = await launchBrowser({ env: { HOME: ca.home } });
    },
    { timeout: 300_000 },
  );

  after(async () => {
    await browser?.close();
    await proxy?.stop();
    const stopped = await gateway?.stop();
    await build?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (stopped) assert.ok(stopped.clean, `the gateway did not stop cleanly: ${JSON.stringify(stopped)}`);
  });

  test('two browsers register over wss:// through nginx and call each other with audio', { timeout: 60_000 }, async () => {
    const mark = gateway.logMark();
    const pages = [];
    try {
      const open = async (label, query = '') => {
        const page = await browser.newPage();
        const entry = { label, page, sockets: [], problems: watchPage(page) };
        pages.push(entry);
        page.on('websocket', (ws) => entry.sockets.push(ws.url()));
        const res = await page.goto(`${proxy.url}/${query}`);
        assert.equal(res.status(), 200, `${label}: the page through nginx`);
        await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, { timeout: 10_000 });
        return page;
      };
      const alice = await open('alice');
      const bob = await open('bob', '?autoanswer=1');
      for (const [page, user] of [
        [alice, 'alice'],
        [bob, 'bob'],
      ]) {
        assert.equal(await page.evaluate(([u, p]) => window.softphone.register(u, p), [user, USERS[user]]), 'registered');
      }
      for (const p of pages) {
        assert.deepEqual(p.sockets, [`wss://${new URL(proxy.url).host}/ws`], `${p.label}: the page's SIP WebSocket`);
      }

      assert.equal(await alice.evaluate(() => window.softphone.call('bob')), true);
      for (const [page, peer] of [
        [bob, 'alice'],
        [alice, 'bob'],
      ]) {
        await waitFor(`${peer}'s call to be active`, () => page.evaluate(() => window.softphone.state), (s) => s.call === 'active' && s.peer === peer, 15_000);
      }
      for (const page of [alice, bob]) {
        const stats = await waitFor(
          'audio both ways',
          () => page.evaluate(() => window.softphone.getStats()),
          (s) => ['connected', 'completed'].includes(s.iceConnectionState) && s.inbound?.packetsReceived > 0 && s.outbound?.packetsSent > 0,
        );
        assert.match(stats.codec || '', /opus/i);
      }

      // The gateway believed nginx: each binding is the browser's address
      // (nginx gives no port) over WSS, not nginx's over WS.
      const res = await fetch(`${gateway.url}/admin/registrations`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      assert.equal(res.status, 200);
      const { registrations } = await res.json();
      assert.deepEqual(
        registrations.map((r) => [r.aor, r.source, r.transport]).sort(),
        [
          [`sip:alice@${gateway.domain}`, '127.0.0.1:0', 'wss'],
          [`sip:bob@${gateway.domain}`, '127.0.0.1:0', 'wss'],
        ],
      );

      await alice.evaluate(() => window.softphone.hangup());
      await waitFor('bob to hang up', () => bob.evaluate(() => window.softphone.state), (s) => s.call === 'idle');
      for (const p of pages) assert.deepEqual(p.problems, [], `${p.label}: page problems`);
    } catch (err) {
      const e = new Error(`${err.stack || err}\n--- nginx ---\n${await proxy.log()}\n--- gateway log of this test ---\n${gateway.logSince(mark)}`);
      e.cause = err;
      throw e;
    } finally {
      await Promise.all(pages.map((p) => p.page.close().catch(() => {})));
    }
  });
});
