// A SIP.js user agent in a transfer (issue 12 point 7), against the real
// gateway in headless Chromium: alice is SIP.js (npm sip.js, bundled here
// by esbuild and loaded into a page of the gateway's origin); bob and carol
// are the bundled softphone (JsSIP), answering by themselves; 1000 is a
// desk phone played by sipp (test/sipp/uas-transfer.xml).
//
//   - alice calls bob, REFERs him to carol, reads the NOTIFYs
//     (message/sipfrag) until one says 200 and hangs up: bob's page follows
//     the REFER and talks to carol, with audio both ways.
//   - alice calls 1000 across the gateway (B2BUA: WebRTC to RTP, which the
//     phone echoes); her DTMF (SIP INFO) makes the phone REFER her to
//     carol: SIP.js follows the REFER (Session delegate onRefer), calls
//     carol, and NOTIFYs the phone, whose final NOTIFY ends the old call;
//     alice and carol talk, with audio both ways.
//
// Run with `npm run test:gateway`. The second test needs sipp.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildGateway, mustRun, distBuilt, gatewayUnavailable, startGateway } from './gateway.js';
import { failureReport, launchBrowser, sipjsBundle, traceWebSocket, waitFor, watchPage } from './helpers.js';
import { expectExit, killSipps, sippMissing, startSipp, transferringPhone } from './sipp.js';

const USERS = { alice: 'alice-secret', bob: 'bob-secret', carol: 'carol-secret', 1000: 'pass1000' };

function skipReason() {
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

describe('transfer with a SIP.js user agent', { skip: mustRun(skipReason()) }, () => {
  let build;
  let gateway;
  let browser;
  let bundle;
  let dir;

  before(
    async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-sipjs-'));
      bundle = await sipjsBundle();
      build = await buildGateway();
      gateway = await startGateway({ bin: build.bin, users: USERS });
      browser = await launchBrowser();
    },
    { timeout: 300_000 },
  );

  after(async () => {
    killSipps();
    await browser?.close();
    const stopped = await gateway?.stop();
    await build?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (stopped) assert.ok(stopped.clean, `the gateway did not stop cleanly: ${JSON.stringify(stopped)}`);
  });

  const state = (page) => page.evaluate(() => window.softphone.state);

  async function audioFlows(label, page) {
    const stats = () => page.evaluate(() => window.softphone.getStats());
    const before = (await stats())?.inbound?.packetsReceived ?? 0;
    await waitFor(`${label}: audio both ways`, stats, (s) => s.inbound?.packetsReceived > before + 10 && s.outbound?.packetsSent > 0);
  }

  // sipjsStats reads the audio counters of the RTCPeerConnection of
  // window.t[name], a SIP.js session in the page; null before it has one.
  const sipjsStats = (page, name) =>
    page.evaluate(async (n) => {
      const pc = window.t[n]?.sessionDescriptionHandler?.peerConnection;
      if (!pc) return null;
      const out = { ice: pc.iceConnectionState, inbound: 0, outbound: 0 };
      (await pc.getStats()).forEach((r) => {
        if (r.kind !== 'audio') return;
        if (r.type === 'inbound-rtp') out.inbound = r.packetsReceived;
        if (r.type === 'outbound-rtp') out.outbound = r.packetsSent;
      });
      return out;
    }, name);

  // sipjsAudioFlows waits until the SIP.js session window.t[name] has
  // received more than n packets more than it had, and sends its own.
  async function sipjsAudioFlows(label, page, name, n = 25) {
    const before = (await sipjsStats(page, name))?.inbound ?? 0;
    await waitFor(
      `${label}: audio both ways`,
      () => sipjsStats(page, name),
      (s) => ['connected', 'completed'].includes(s.ice) && s.inbound > before + n && s.outbound > 0,
    );
  }

  // diagnosed wraps a test body fn({ softphone, sipjs, sipp }):
  // softphone(user) opens the bundled softphone (auto-answer) registered
  // as user; sipjs(user) opens a page of the gateway's origin with SIP.js
  // loaded and a UserAgent registered as user (window.t.ua); sipp(label,
  // args, opts) runs sipp against the gateway's UDP listener. On failure
  // the error carries each page's SIP over WebSocket, every sipp's output
  // and message trace, and the gateway's log of the test.
  function diagnosed(fn) {
    return async () => {
      const mark = gateway.logMark();
      const pages = [];
      const sipps = [];
      const open = async (label) => {
        const page = await browser.newPage();
        const entry = { label, page, trace: [], problems: watchPage(page) };
        pages.push(entry);
        const t0 = Date.now();
        const note = (line) => entry.trace.push(`+${((Date.now() - t0) / 1000).toFixed(3)}s ${line}`);
        traceWebSocket(page, note);
        return entry;
      };
      const softphone = async (user) => {
        const { page } = await open(user);
        await page.goto(`${gateway.url}/?autoanswer=1`);
        await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, { timeout: 10_000 });
        assert.equal(await page.evaluate(([u, p]) => window.softphone.register(u, p), [user, USERS[user]]), 'registered');
        return page;
      };
      // SIP.js in a page of the gateway's origin, so that the page's CSP
      // lets it load and connect. SIP.js logs to the console; its errors
      // are not the page's own, so they are not counted as problems.
      const sipjs = async (user) => {
        const entry = await open(`${user} (SIP.js)`);
        entry.problems = [];
        const { page } = entry;
        await page.route(`${gateway.url}/sipjs-test.js`, (route) =>
          route.fulfill({ status: 200, contentType: 'application/javascript', body: bundle }),
        );
        await page.goto(gateway.url);
        await page.addScriptTag({ url: '/sipjs-test.js' });
        await page.evaluate(
          async ([wsUrl, domain, u, password]) => {
            const { UserAgent, Registerer, RegistererState } = window.SIP;
            const ua = new UserAgent({
              uri: UserAgent.makeURI(`sip:${u}@${domain}`),
              transportOptions: { server: wsUrl },
              authorizationUsername: u,
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
            window.t = { ua, frags: [], log: [] };
          },
          [gateway.wsUrl, gateway.domain, user, USERS[user]],
        );
        return page;
      };
      const sipp = (label, args, opts = {}) => {
        const p = startSipp(label, [...args, gateway.sipUdp], { dir, ...opts });
        sipps.push(p);
        return p;
      };
      try {
        await fn({ softphone, sipjs, sipp });
        for (const p of pages) assert.deepEqual(p.problems, [], `${p.label}: page problems`);
      } catch (err) {
        // A SIP.js page shows its log (window.t.log); a softphone, its state.
        const pageState = (page) => page.evaluate(() => (window.t ? window.t.log : window.softphone?.state));
        throw await failureReport(err, { pages, sipps, state: pageState, gatewayLog: gateway.logSince(mark) });
      } finally {
        await Promise.all(pages.map((p) => p.page.close().catch(() => {})));
        await Promise.all(sipps.map((p) => p.kill()));
      }
    };
  }

  test(
    'alice (SIP.js) transfers bob (softphone) to carol (softphone)',
    { timeout: 90_000 },
    diagnosed(async ({ softphone, sipjs }) => {
      const bob = await softphone('bob');
      const carol = await softphone('carol');
      const alice = await sipjs('alice');

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
      // The gateway proxies the REFER's 202 and bob's NOTIFYs as separate
      // transactions, and a NOTIFY may overtake the 202 (RFC 3515 §2.4.4).
      assert.ok(frags.includes('REFER 202'), `alice's REFER was accepted: ${JSON.stringify(frags)}`);
      await alice.evaluate(() => window.t.session.bye());

      const b = await waitFor('bob in a call with carol', () => state(bob), (s) => s.call === 'active' && s.peer === 'carol');
      assert.equal(b.transferredFrom, 'alice');
      await waitFor('carol in a call with bob', () => state(carol), (s) => s.call === 'active' && s.peer === 'bob');
      await audioFlows('bob', bob);
      await audioFlows('carol', carol);
      await bob.evaluate(() => window.softphone.hangup());
      await waitFor('carol: the call ended', () => state(carol), (s) => s.call === 'idle');
    }),
  );

  // The phone transfers SIP.js, not the other way round: the B2BUA
  // relays a REFER to the party it transfers, and sipp cannot follow one
  // (its scenario cannot start the new call, with a Call-ID of its own,
  // that a REFER asks for). SIP.js ends the refer subscription with every
  // NOTIFY it sends (Subscription-State: terminated on its new call's 180
  // too) and then sends the final one all the same: the gateway keeps the
  // subscription until a final status comes, and tells the phone it is
  // active meanwhile.
  test(
    '1000 (sipp desk phone) transfers alice (SIP.js) to carol (softphone) with REFER: SIP.js follows, they talk',
    { timeout: 90_000, skip: mustRun(sippMissing() || false) },
    diagnosed(async ({ softphone, sipjs, sipp }) => {
      const uas = await transferringPhone(sipp, { password: USERS[1000], domain: gateway.domain, target: 'carol', dir });
      const carol = await softphone('carol');
      const alice = await sipjs('alice');

      // alice calls the phone; she follows whatever REFER comes in her
      // call, as a SIP.js application does: accept it, and call the
      // Refer-To target with Referral.makeInviter, which NOTIFYs the
      // transferor of the new call's progress.
      await alice.evaluate(async (domain) => {
        const { UserAgent, Inviter, SessionState } = window.SIP;
        const t = window.t;
        const media = { constraints: { audio: true, video: false } };
        const watch = (name, session) =>
          session.stateChange.addListener((s) => {
            t.log.push(`${name}: ${s}`);
            if (s === SessionState.Terminated) t[`${name}Ended`] = true;
          });
        const inviter = new Inviter(t.ua, UserAgent.makeURI(`sip:1000@${domain}`), {
          sessionDescriptionHandlerOptions: media,
          delegate: {
            onRefer: (referral) => {
              t.log.push(`REFER to ${referral.referTo.uri}, by ${referral.referredBy}`);
              t.referTo = String(referral.referTo.uri);
              referral
                .accept()
                .then(() => {
                  const next = referral.makeInviter({ sessionDescriptionHandlerOptions: media });
                  t.transferred = next;
                  watch('transferred', next);
                  next.stateChange.addListener((s) => {
                    if (s === SessionState.Established) t.transferredUp = true;
                  });
                  return next.invite();
                })
                .catch((err) => t.log.push(`following the REFER failed: ${err.message}`));
            },
          },
        });
        watch('session', inviter);
        const established = new Promise((resolve, reject) =>
          inviter.stateChange.addListener((s) => {
            if (s === SessionState.Established) resolve();
            if (s === SessionState.Terminated) reject(new Error('the call ended'));
          }),
        );
        t.session = inviter;
        await inviter.invite();
        await established;
      }, gateway.domain);
      // The phone answers PCMU alone and echoes what it gets: the B2BUA
      // turns alice's Opus over SRTP into PCMU and back.
      await sipjsAudioFlows('alice with the phone', alice, 'session');

      // The phone's signal to transfer (uas-transfer.xml waits for an
      // INFO): a DTMF tone as SIP INFO, as SIP.js sends it.
      await alice.evaluate(() =>
        window.t.session.info({
          requestOptions: {
            body: { contentDisposition: 'render', contentType: 'application/dtmf-relay', content: 'Signal=1\r\nDuration=160' },
          },
        }),
      );
      await waitFor('alice in a call with carol', () => alice.evaluate(() => window.t.transferredUp), (up) => up === true);
      assert.equal(await alice.evaluate(() => window.t.referTo), `sip:carol@${gateway.domain}`);
      await waitFor('carol in a call with alice', () => state(carol), (s) => s.call === 'active' && s.peer === 'alice');
      // uas-transfer.xml exits 0 only once a NOTIFY said 2xx and the BYE
      // that ends the transferred call came.
      await expectExit(uas, 20_000, 'the phone should see the transfer succeed and get BYE');
      const notifies = (await uas.trace()).split(/^-{10,}.*$/m).filter((m) => /^NOTIFY /m.test(m));
      assert.ok(notifies.length >= 2, `the phone got ${notifies.length} NOTIFYs, want progress and the outcome`);
      for (const n of notifies.slice(0, -1)) assert.match(n, /^Subscription-State: active/m, `a progress NOTIFY:\n${n}`);
      assert.match(notifies.at(-1), /^SIP\/2\.0 200 /m, 'the final NOTIFY says the target answered');
      assert.match(notifies.at(-1), /^Subscription-State: terminated/m, 'the final NOTIFY ends the subscription');
      await waitFor("alice's call with the phone ended", () => alice.evaluate(() => window.t.sessionEnded), (e) => e === true);

      await sipjsAudioFlows('alice with carol', alice, 'transferred');
      await audioFlows('carol', carol);
      await alice.evaluate(() => window.t.transferred.bye());
      await waitFor('carol: the call ended', () => state(carol), (s) => s.call === 'idle');
    }),
  );
});
