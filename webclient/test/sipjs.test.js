// A SIP.js user agent transfers a call (issue 12 point 7), against the real
// gateway in headless Chromium: alice is SIP.js (npm sip.js, bundled here
// by esbuild and loaded into a page of the gateway's origin); bob and carol
// are the bundled softphone (JsSIP), answering by themselves. alice calls
// bob, REFERs him to carol, reads the NOTIFYs (message/sipfrag) until one
// says 200 and hangs up: bob's page follows the REFER and talks to carol,
// with audio both ways.
//
// Run with `npm run test:gateway`.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildGateway, mustRun, distBuilt, gatewayUnavailable, startGateway } from './gateway.js';
import { launchBrowser, sipjsBundle, waitFor, watchPage } from './helpers.js';

const USERS = { alice: 'alice-secret', bob: 'bob-secret', carol: 'carol-secret' };

function skipReason() {
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

describe('transfer from a SIP.js user agent', { skip: mustRun(skipReason()) }, () => {
  let build;
  let gateway;
  let browser;
  let bundle;

  before(
    async () => {
      bundle = await sipjsBundle();
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
    if (stopped) assert.ok(stopped.clean, `the gateway did not stop cleanly: ${JSON.stringify(stopped)}`);
  });

  const state = (page) => page.evaluate(() => window.softphone.state);

  async function audioFlows(label, page) {
    const stats = () => page.evaluate(() => window.softphone.getStats());
    const before = (await stats())?.inbound?.packetsReceived ?? 0;
    await waitFor(`${label}: audio both ways`, stats, (s) => s.inbound?.packetsReceived > before + 10 && s.outbound?.packetsSent > 0);
  }

  test('alice (SIP.js) transfers bob (softphone) to carol (softphone)', { timeout: 90_000 }, async () => {
    const mark = gateway.logMark();
    const pages = [];
    try {
      const softphone = async (user) => {
        const page = await browser.newPage();
        pages.push({ label: user, page, problems: watchPage(page) });
        await page.goto(`${gateway.url}/?autoanswer=1`);
        await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, { timeout: 10_000 });
        assert.equal(await page.evaluate(([u, p]) => window.softphone.register(u, p), [user, USERS[user]]), 'registered');
        return page;
      };
      const bob = await softphone('bob');
      const carol = await softphone('carol');

      // SIP.js in a page of the gateway's origin, so that the page's CSP
      // lets it load and connect.
      const alice = await browser.newPage();
      pages.push({ label: 'alice (SIP.js)', page: alice, problems: [] });
      await alice.route(`${gateway.url}/sipjs-test.js`, (route) =>
        route.fulfill({ status: 200, contentType: 'application/javascript', body: bundle }),
      );
      await alice.goto(gateway.url);
      await alice.addScriptTag({ url: '/sipjs-test.js' });
      await alice.evaluate(
        async ([wsUrl, domain, user, password]) => {
          const { UserAgent, Registerer, RegistererState } = window.SIP;
          const ua = new UserAgent({
            uri: UserAgent.makeURI(`sip:${user}@${domain}`),
            transportOptions: { server: wsUrl },
            authorizationUsername: user,
            authorizationPassword: password,
            sessionDescriptionHandlerFactoryOptions: { iceGatheringTimeout: 1000 },
          });
          await ua.start();
          const reg = new Registerer(ua);
          const registered = new Promise((resolve) =>
            reg.stateChange.addListener((s) => s === RegistererState.Registered && resolve()),
          );
          await reg.register();
          await registered;
          window.t = { ua, frags: [] };
        },
        [gateway.wsUrl, gateway.domain, 'alice', USERS.alice],
      );

      await alice.evaluate(async (domain) => {
        const { UserAgent, Inviter, SessionState } = window.SIP;
        const inviter = new Inviter(window.t.ua, UserAgent.makeURI(`sip:bob@${domain}`), {
          sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } },
        });
        const established = new Promise((resolve, reject) =>
          inviter.stateChange.addListener((s) => {
            if (s === SessionState.Established) resolve();
            if (s === SessionState.Terminated) reject(new Error('the call ended'));
          }),
        );
        await inviter.invite();
        await established;
        window.t.session = inviter;
      }, gateway.domain);
      await waitFor('bob in a call with alice', () => state(bob), (s) => s.call === 'active' && s.peer === 'alice');

      await alice.evaluate(async (domain) => {
        const { UserAgent } = window.SIP;
        const t = window.t;
        await t.session.refer(UserAgent.makeURI(`sip:carol@${domain}`), {
          requestDelegate: { onAccept: (res) => t.frags.push(`REFER ${res.message.statusCode}`) },
          onNotify: (n) => {
            t.frags.push(n.request.body.split('\r\n')[0]);
            n.accept();
          },
        });
      }, gateway.domain);
      const frags = await waitFor(
        "alice's NOTIFYs up to 200",
        () => alice.evaluate(() => window.t.frags),
        (f) => f.includes('SIP/2.0 200 OK'),
      );
      assert.equal(frags[0], 'REFER 202');
      await alice.evaluate(() => window.t.session.bye());

      const b = await waitFor('bob in a call with carol', () => state(bob), (s) => s.call === 'active' && s.peer === 'carol');
      assert.equal(b.transferredFrom, 'alice');
      await waitFor('carol in a call with bob', () => state(carol), (s) => s.call === 'active' && s.peer === 'bob');
      await audioFlows('bob', bob);
      await audioFlows('carol', carol);
      await bob.evaluate(() => window.softphone.hangup());
      await waitFor('carol: the call ended', () => state(carol), (s) => s.call === 'idle');
      for (const p of pages) assert.deepEqual(p.problems, [], `${p.label}: page problems`);
    } catch (err) {
      const e = new Error(`${err.stack || err}\n--- gateway log of this test ---\n${gateway.logSince(mark)}`);
      e.cause = err;
      throw e;
    } finally {
      await Promise.all(pages.map((p) => p.page.close().catch(() => {})));
    }
  });
});
