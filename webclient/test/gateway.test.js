// The softphone against the real gateway: cmd/switchboard is built and run
// on loopback (test/gateway.js), and headless Chromium loads the page the
// gateway serves itself, so JsSIP speaks SIP over the gateway's own /ws, on
// the page's origin. Registration goes through the registrar's digest
// challenge; a call between two pages goes through the proxy (WebSocket to
// WebSocket: flow tokens, Record-Route, in-dialog requests both ways) while
// WebRTC media goes straight between the browsers.
//
// Run with `npm run test:gateway`, which builds the page first: the binary
// embeds webclient/dist. SWITCHBOARD_BIN uses a binary already built
// instead of `go build`. When a test fails, its error carries the SIP
// messages each page sent and received and the gateway's log for the test.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildGateway, mustRun, distBuilt, gatewayUnavailable, startGateway } from './gateway.js';
import { launchBrowser, relayWebSocket, softphoneState as state, waitState, waitStats, watchPage } from './helpers.js';

const USERS = { alice: 'alice-secret', bob: 'bob-secret' };
const T = { timeout: 45_000 };

// CHALLENGE_BUG names a gateway bug that makes the pages' WebSocket go
// through a Playwright route removing non-MD5 challenges from 401 and 407
// responses (and skips the test of the challenge as sent). JsSIP 3.13.8
// keeps only the LAST WWW-Authenticate / Proxy-Authenticate of a response
// and aborts unless it is MD5; the gateway used to send MD5 then SHA-256.
// Fixed: the gateway now challenges with MD5 alone by default. Kept as a
// switch for the next time the challenges change.
const CHALLENGE_BUG = '';
const md5Workaround = Boolean(CHALLENGE_BUG);

function skipReason() {
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

// onlyMD5Challenges removes from a 401 or 407 the challenges whose
// algorithm is not MD5. Returns [message, how many were removed].
function onlyMD5Challenges(message) {
  if (typeof message !== 'string' || !/^SIP\/2\.0 40[17] /.test(message)) return [message, 0];
  const end = message.indexOf('\r\n\r\n');
  if (end < 0) return [message, 0];
  let removed = 0;
  const head = message
    .slice(0, end)
    .split('\r\n')
    .filter((line) => {
      if (!/^(www|proxy)-authenticate\s*:/i.test(line)) return true;
      const alg = /\balgorithm\s*=\s*"?([^",\s]+)/i.exec(line);
      if (!alg || alg[1].toUpperCase() === 'MD5') return true;
      removed++;
      return false;
    });
  return [head.join('\r\n') + message.slice(end), removed];
}

describe('the softphone against the real gateway', { skip: mustRun(skipReason()) }, () => {
  let build;
  let gateway;
  let browser;

  before(
    async () => {
      build = await buildGateway();
      gateway = await startGateway({ bin: build.bin, users: USERS });
      browser = await launchBrowser();
    },
    { timeout: 300_000 },
  );

  after(async () => {
    await browser?.close();
    const stopped = await gateway?.stop();
    await build?.cleanup();
    if (stopped) {
      assert.ok(
        stopped.clean,
        `the gateway did not stop cleanly on SIGTERM: ${JSON.stringify(stopped)}\n--- gateway log ---\n${gateway.log()}`,
      );
    }
  });

  // diagnosed wraps a test body fn({ t, open, sip }). open(label, query,
  // { asSent, relay }) opens the gateway's page in a browser context of its own
  // and records its SIP over WebSocket; sip(label) is that record, as
  // [{ dir: 'sent' | 'received', text }]. When the test fails, the error
  // gets every page's state, problems and SIP trace, and the gateway log.
  function diagnosed(fn) {
    return async (t) => {
      const mark = gateway.logMark();
      const pages = [];
      let removedChallenges = 0;

      const open = async (label, query = '', { asSent = !md5Workaround, relay } = {}) => {
        const page = await browser.newPage();
        const entry = { label, page, trace: [], messages: [], problems: watchPage(page) };
        pages.push(entry);
        const t0 = Date.now();
        const note = (line) => entry.trace.push(`+${((Date.now() - t0) / 1000).toFixed(3)}s ${line}`);
        const record = (dir, text) => {
          entry.messages.push({ dir, text });
          note(`${dir === 'sent' ? '>>> sent' : '<<< received'}\n${text}`);
        };
        if (relay) {
          // Through a relay the test can cut (helpers.js), as sent.
          await relayWebSocket(page, relay, note);
        }
        if (asSent || relay) {
          page.on('websocket', (ws) => {
            note(`=== WebSocket ${ws.url()}`);
            ws.on('framesent', (f) => record('sent', f.payload.toString()));
            ws.on('framereceived', (f) => record('received', f.payload.toString()));
            ws.on('socketerror', (e) => note(`=== WebSocket error ${e}`));
            ws.on('close', () => note('=== WebSocket closed'));
          });
        } else {
          await page.routeWebSocket(/\/ws$/, (ws) => {
            note(`=== WebSocket ${ws.url()} (routed: non-MD5 challenges removed)`);
            const server = ws.connectToServer();
            ws.onMessage((m) => {
              record('sent', String(m));
              server.send(m);
            });
            server.onMessage((m) => {
              record('received', String(m));
              const [out, removed] = onlyMD5Challenges(m);
              if (removed) {
                removedChallenges += removed;
                note(`=== removed ${removed} non-MD5 challenge(s) before JsSIP saw this response`);
              }
              ws.send(out);
            });
            ws.onClose((code, reason) => {
              note(`=== page closed the WebSocket ${code ?? ''} ${reason ?? ''}`);
              server.close({ code, reason });
            });
            server.onClose((code, reason) => {
              note(`=== gateway closed the WebSocket ${code ?? ''} ${reason ?? ''}`);
              ws.close({ code, reason });
            });
          });
        }
        await page.goto(`${gateway.url}/${query}`);
        await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, {
          timeout: 10_000,
        });
        return page;
      };
      const sip = (label) => pages.find((p) => p.label === label)?.messages ?? [];

      try {
        await fn({ t, open, sip });
      } catch (err) {
        const parts = [String(err && err.stack ? err.stack : err)];
        for (const p of pages) {
          let state = '(page closed)';
          try {
            state = JSON.stringify(await p.page.evaluate(() => window.softphone.state));
          } catch {
            // closed or crashed
          }
          parts.push(`--- page ${p.label}: state ${state}`);
          if (p.problems.length) parts.push(`--- page ${p.label}: problems\n${p.problems.join('\n')}`);
          parts.push(`--- page ${p.label}: SIP over WebSocket\n${p.trace.join('\n').replace(/\r\n/g, '\n')}`);
        }
        parts.push(`--- gateway log of this test ---\n${gateway.logSince(mark)}`);
        const e = new Error(parts.join('\n'));
        e.cause = err;
        throw e;
      } finally {
        if (removedChallenges) {
          t.diagnostic(`workaround: removed ${removedChallenges} non-MD5 challenge(s) from 401/407 (${CHALLENGE_BUG})`);
        }
        await Promise.all(pages.map((p) => p.page.close().catch(() => {})));
      }
    };
  }

  // registerBoth signs alice and bob in on their pages.
  async function registerBoth(alice, bob) {
    for (const [page, user] of [
      [alice, 'alice'],
      [bob, 'bob'],
    ]) {
      assert.equal(
        await page.evaluate(([u, p]) => window.softphone.register(u, p), [user, USERS[user]]),
        'registered',
      );
    }
  }

  // accepted calls act() until it returns true: JsSIP refuses a re-INVITE
  // (hold, unhold) while its previous offer/answer is still being applied
  // to the RTCPeerConnection, and says so only by returning false.
  async function accepted(what, act, timeout = 5_000) {
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      if (await act()) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`${what} was refused for ${timeout} ms`);
  }

  const firstLine = (m) => m.text.slice(0, m.text.indexOf('\r\n'));
  const header = (m, name) => {
    const re = new RegExp(`^${name}\\s*:\\s*(.*)$`, 'gim');
    return [...m.text.slice(0, m.text.indexOf('\r\n\r\n')).matchAll(re)].map((x) => x[1]);
  };
  const requests = (msgs, dir, method) => msgs.filter((m) => m.dir === dir && firstLine(m).startsWith(`${method} `));
  const responses = (msgs, method) =>
    msgs.filter((m) => m.dir === 'received' && firstLine(m).startsWith('SIP/2.0 ') && header(m, 'CSeq')[0]?.endsWith(` ${method}`));
  const statusOf = (m) => Number(firstLine(m).split(' ')[1]);

  test('the gateway serves the softphone page and its settings', T, async () => {
    const res = await fetch(`${gateway.url}/config.json`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { domain: gateway.domain, wsPath: '/ws' });
    const page = await fetch(`${gateway.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') || '', /connect-src 'self' ws:\/\/127\.0\.0\.1:\d+/);
    assert.match(await page.text(), /<script[^>]+src="app-[A-Z0-9]+\.js"/, 'the built softphone, not the placeholder');
  });

  test(
    'JsSIP registers with the digest challenge exactly as the gateway sends it',
    { ...T, skip: CHALLENGE_BUG || false },
    diagnosed(async ({ open, sip }) => {
      const page = await open('alice', '', { asSent: true });
      assert.equal(
        await page.evaluate(([u, p]) => window.softphone.register(u, p), ['alice', USERS.alice]),
        'registered',
      );
      const registers = requests(sip('alice'), 'sent', 'REGISTER');
      assert.ok(registers.some((m) => header(m, 'Authorization').length > 0), 'REGISTER sent with credentials');
    }),
  );

  test(
    'alice signs in through the form: REGISTER over /ws, digest challenge, registered',
    T,
    diagnosed(async ({ open, sip }) => {
      const page = await open('alice');
      await page.getByLabel('User', { exact: true }).fill('alice');
      await page.getByLabel('Password').fill(USERS.alice);
      await page.getByRole('button', { name: 'Sign in' }).click();
      const s = await waitState(page, (x) => x.registration === 'registered');
      assert.equal(s.aor, `alice@${gateway.domain}`);
      assert.equal(s.error, '');
      assert.equal(await page.locator('#who').textContent(), `alice@${gateway.domain}`);
      assert.equal(await page.locator('#reg-text').textContent(), 'Ready');
      assert.equal(await page.getByRole('alert').textContent(), '');

      // The registrar challenged, JsSIP answered with MD5 credentials.
      const msgs = sip('alice');
      assert.deepEqual(responses(msgs, 'REGISTER').map(statusOf), [401, 200]);
      const [, second] = requests(msgs, 'sent', 'REGISTER');
      assert.match(header(second, 'Authorization')[0] || '', /^Digest .*algorithm=MD5/);

      // Signing out unregisters (Expires 0); signing in again works.
      await page.evaluate(() => window.softphone.signOut());
      await waitState(page, (x) => x.registration === 'signed-out');
      assert.equal(
        await page.evaluate(([u, p]) => window.softphone.register(u, p), ['alice', USERS.alice]),
        'registered',
      );
    }),
  );

  test(
    'a wrong password sends the user back to the form, in words',
    T,
    diagnosed(async ({ open, sip }) => {
      const page = await open('bob');
      await page.getByLabel('User', { exact: true }).fill('bob');
      await page.getByLabel('Password').fill('not-the-password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').filter({ hasText: 'Wrong user name or password.' }).waitFor({ timeout: 10_000 });
      assert.equal((await state(page)).registration, 'signed-out');
      assert.equal(await page.getByRole('heading', { name: 'Sign in' }).isVisible(), true);
      assert.equal(await page.evaluate(() => document.activeElement.id), 'password');
      // Refused for the password itself: JsSIP did send credentials.
      const msgs = sip('bob');
      const withCredentials = requests(msgs, 'sent', 'REGISTER').filter((m) => header(m, 'Authorization').length);
      assert.equal(withCredentials.length, 1, 'one REGISTER with credentials');
      assert.ok(
        responses(msgs, 'REGISTER').every((m) => [401, 403].includes(statusOf(m))),
        'every REGISTER refused',
      );
    }),
  );

  test(
    'alice calls bob through the proxy: ICE connects, audio both ways, DTMF, hold, hang up ends both',
    T,
    diagnosed(async ({ open, sip }) => {
      const alice = await open('alice');
      const bob = await open('bob', '?autoanswer=1');
      await registerBoth(alice, bob);

      assert.equal(await alice.evaluate(() => window.softphone.call('bob')), true);
      await waitState(bob, (s) => s.call === 'active' && s.peer === 'alice', 15_000);
      await waitState(alice, (s) => s.call === 'active' && s.peer === 'bob', 15_000);

      // Media goes browser to browser (the proxy carries only SIP): ICE
      // over loopback host candidates, audio received on both sides.
      for (const page of [alice, bob]) {
        const stats = await waitStats(
          page,
          (s) =>
            ['connected', 'completed'].includes(s.iceConnectionState) &&
            s.inbound?.packetsReceived > 0 &&
            s.outbound?.packetsSent > 0,
        );
        assert.equal(stats.connectionState, 'connected');
        assert.match(stats.codec || '', /opus/i);
      }

      // The proxy stayed on the path: bob's INVITE was record-routed.
      const [invite] = requests(sip('bob'), 'received', 'INVITE');
      assert.ok(header(invite, 'Record-Route').length > 0, 'INVITE to bob has Record-Route');

      // In-dialog requests follow the route set both ways: INFO (DTMF)
      // from alice, re-INVITE (hold) from bob.
      assert.equal(await alice.evaluate(() => window.softphone.dtmf('1#')), true);
      await waitState(bob, (s) => s.tonesReceived === '1#');
      await accepted('hold', () => bob.evaluate(() => window.softphone.hold(true)));
      await waitState(bob, (s) => s.held);
      await waitState(alice, (s) => s.remoteHeld);
      await accepted('unhold', () => bob.evaluate(() => window.softphone.hold(false)));
      await waitState(bob, (s) => !s.held);
      await waitState(alice, (s) => !s.remoteHeld);

      // BYE goes by the route set, back through the gateway.
      await alice.evaluate(() => window.softphone.hangup());
      await waitState(alice, (s) => s.call === 'idle');
      const bobEnd = await waitState(bob, (s) => s.call === 'idle');
      assert.equal(bobEnd.status, 'alice hung up.');
      assert.equal(bobEnd.error, '');
      const [bye] = requests(sip('alice'), 'sent', 'BYE');
      assert.ok(header(bye, 'Route').length > 0, "alice's BYE carries the route set");
      assert.equal(requests(sip('bob'), 'received', 'BYE').length, 1, 'bob got the BYE');

      const [aliceLog, bobLog] = await Promise.all(
        [alice, bob].map((p) => p.evaluate(() => window.softphone.history())),
      );
      assert.equal(aliceLog[0].direction, 'out');
      assert.equal(aliceLog[0].outcome, 'answered');
      assert.equal(bobLog[0].direction, 'in');
      assert.equal(bobLog[0].outcome, 'answered');
      assert.equal(bobLog[0].peer, 'alice');
      // Both stay registered after the call.
      assert.equal((await state(alice)).registration, 'registered');
      assert.equal((await state(bob)).registration, 'registered');
    }),
  );
  test(
    "bob's WebSocket drops in a call with alice: he reconnects, the call goes on, alice's requests reach him over the new one",
    { timeout: 60_000 },
    diagnosed(async ({ open }) => {
      const alice = await open('alice');
      const relay = {};
      const bob = await open('bob', '?autoanswer=1', { relay });
      await registerBoth(alice, bob);
      assert.equal(await alice.evaluate(() => window.softphone.call('bob')), true);
      await waitState(bob, (s) => s.call === 'active', 15_000);
      await waitState(alice, (s) => s.call === 'active', 15_000);
      const received = async () => (await bob.evaluate(() => window.softphone.getStats())).inbound?.packetsReceived ?? 0;
      await waitStats(bob, (s) => s.inbound?.packetsReceived > 0);

      relay.cut();
      await waitState(bob, (s) => s.registration === 'disconnected', 5_000);
      // The media goes browser to browser: it goes on.
      const before = await received();
      await waitStats(bob, (s) => s.inbound?.packetsReceived > before + 25, 5_000);
      // JsSIP reconnects and registers its instance again.
      await waitState(bob, (s) => s.registration === 'registered', 20_000);
      assert.equal(relay.sockets.length, 2);

      // Alice's requests ride her route set, whose flow token names bob's
      // old connection: the proxy follows it to the new one.
      assert.equal(await alice.evaluate(() => window.softphone.dtmf('7')), true);
      await waitState(bob, (s) => s.tonesReceived === '7');
      await alice.evaluate(() => window.softphone.hangup());
      await waitState(alice, (s) => s.call === 'idle');
      const end = await waitState(bob, (s) => s.call === 'idle');
      assert.equal(end.status, 'alice hung up.');
      assert.ok(relay.sockets[1].received.some((m) => m.startsWith('BYE ')), 'the BYE came over the new WebSocket');
      assert.ok(relay.sockets[1].received.some((m) => m.startsWith('INFO ')), 'so did the INFO');
    }),
  );
});
