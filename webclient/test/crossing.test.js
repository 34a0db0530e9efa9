// Calls that cross between a browser and a SIP phone, against the real
// gateway: cmd/switchboard is built and run on loopback (test/gateway.js),
// headless Chromium loads the softphone the gateway serves (fake audio
// device), and sipp (test/sipp/*.xml) plays the phone over UDP with plain
// RTP. The gateway's B2BUA bridges the two: WebRTC (DTLS-SRTP, ICE) on the
// browser's side, RTP on the phone's.
//
//   (b) alice (browser) calls 1000, a sipp UAS that answers with PCMU and
//       echoes RTP (-rtp_echo): the browser receives audio, hangs up, and
//       the UAS gets the BYE (its scenario exits 0 only then).
//   (c) 1000 (a sipp UAC, digest-authenticated on 407) calls alice, whose
//       page auto-answers; the UAC plays PCMU from a pcap, the browser
//       receives audio, the UAC hangs up and the browser's call ends.
//   (d) alice calls 1000 (a sipp UAS that echoes RTP and hangs up when an
//       INFO comes); the test cuts her WebSocket (the page's WebSocket goes
//       through a relay the test holds): audio goes on, JsSIP reconnects
//       and registers its instance again, the call goes on, her DTMF (INFO)
//       reaches the phone and the phone's BYE reaches her over the new
//       WebSocket (issue 15).
//   (e) the same call, and the page restarts ICE (restartIce()): the
//       gateway answers the re-INVITE with new ICE credentials and the
//       same DTLS fingerprint, audio goes on, and the phone, which fails on
//       any request but the INFO, hears nothing of it.
//   (f) alice (browser) calls 1000, a sipp UAS (uas-transfer.xml) that
//       transfers her to carol (browser, auto-answer) with a REFER when
//       her DTMF (SIP INFO) arrives: alice's page follows it, sipp sees
//       the NOTIFYs and the BYE, and alice and carol talk.
//
// Run with `npm run test:gateway`. Needs sipp (skipped without it). When a
// test fails, its error carries the page's SIP over WebSocket, sipp's
// output and -trace_msg log, and the gateway's (debug) log for the test.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildGateway, mustRun, DEFAULT_USERS, distBuilt, gatewayUnavailable, startGateway } from './gateway.js';
import { failureReport, launchBrowser, relayWebSocket, softphoneState as state, traceWebSocket, waitState, waitStats, watchPage } from './helpers.js';
import { redisUnavailable, startRedis } from './redis.js';
import {
  echoPhone as sippEchoPhone,
  expectExit,
  freeUdpPort,
  killSipps,
  pcapCallerArgs,
  pcmuPcap,
  sippMissing,
  startSipp,
  transferringPhone,
} from './sipp.js';

const USERS = { ...DEFAULT_USERS, 1000: 'pass1000', carol: 'carol-secret' };
const T = { timeout: 60_000 };

function skipReason() {
  const sipp = sippMissing();
  if (sipp) return sipp;
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

describe('calls crossing between the browser and a SIP phone (B2BUA)', { skip: mustRun(skipReason()) }, () => {
  let build;
  let gateway;
  let browser;
  let dir;

  before(
    async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-crossing-'));
      await writeFile(path.join(dir, 'pcmu.pcap'), pcmuPcap(6));
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
    if (stopped) {
      assert.ok(
        stopped.clean,
        `the gateway did not stop cleanly on SIGTERM: ${JSON.stringify(stopped)}\n--- gateway log ---\n${gateway.log()}`,
      );
    }
  });

  // diagnosed wraps a test body fn({ open, sipp }): open(label, query)
  // opens the gateway's page and records its SIP over WebSocket;
  // sipp(label, args, opts) runs sipp against the gateway's UDP listener.
  // On failure the error gets the pages' state and SIP, every sipp's
  // command, output and message trace, and the gateway log of the test.
  function diagnosed(fn) {
    return async () => {
      const mark = gateway.logMark();
      const pages = [];
      const sipps = [];
      // open's relay, an object, makes the page's WebSocket go through a
      // relay the test controls: relay.sockets are its connections, each
      // { sent, received } (the SIP messages), and relay.cut() drops the
      // latest one at both ends, as a network change does.
      const open = async (label, query = '', { relay } = {}) => {
        const page = await browser.newPage();
        const entry = { label, page, trace: [], problems: watchPage(page) };
        pages.push(entry);
        const t0 = Date.now();
        const note = (line) => entry.trace.push(`+${((Date.now() - t0) / 1000).toFixed(3)}s ${line}`);
        traceWebSocket(page, note);
        if (relay) await relayWebSocket(page, relay, note);
        await page.goto(`${gateway.url}/${query}`);
        await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, {
          timeout: 10_000,
        });
        return page;
      };
      const sipp = (label, args, opts = {}) => {
        const s = startSipp(label, [...args, gateway.sipUdp], { dir, ...opts });
        sipps.push(s);
        return s;
      };
      try {
        await fn({ open, sipp });
      } catch (err) {
        throw await failureReport(err, { pages, sipps, state, gatewayLog: gateway.logSince(mark) });
      } finally {
        await Promise.all(pages.map((p) => p.page.close().catch(() => {})));
        await Promise.all(sipps.map((s) => s.kill()));
      }
    };
  }

  // metric returns the value of a sample of the gateway's /metrics.
  async function metric(series) {
    const body = await (await fetch(`${gateway.url}/metrics`)).text();
    const line = body.split('\n').find((l) => l.startsWith(`${series} `));
    assert.ok(line, `no ${series} in /metrics`);
    return Number(line.slice(series.length + 1));
  }

  // echoPhone registers 1000 with sipp and runs scenario as its UAS, which
  // echoes RTP: uas-echo.xml waits for the caller's BYE; uas-echo-hangup.xml
  // answers with PCMU alone, hangs up when it gets an INFO (the browser's
  // DTMF, relayed: no telephone-event) and fails on any other request,
  // such as a re-INVITE.
  const echoPhone = (sipp, scenario) => sippEchoPhone(sipp, { password: USERS[1000], scenario });

  // aliceCallsHangingUpPhone opens alice's page, its WebSocket through a
  // relay, has her call 1000, an echoPhone of uas-echo-hangup.xml, and
  // waits for audio. Returns { uas, relay, alice }.
  async function aliceCallsHangingUpPhone(open, sipp) {
    const uas = await echoPhone(sipp, 'uas-echo-hangup.xml');
    const relay = {};
    const alice = await open('alice', '', { relay });
    assert.equal(
      await alice.evaluate(([u, p]) => window.softphone.register(u, p), ['alice', USERS.alice]),
      'registered',
    );
    assert.equal(await alice.evaluate(() => window.softphone.call('1000')), true);
    await waitState(alice, (s) => s.call === 'active' && s.peer === '1000', 15_000);
    await moreAudio(alice, 25, 15_000);
    return { uas, relay, alice };
  }

  // moreAudio waits until the page received n more packets.
  async function moreAudio(page, n, timeout) {
    const from = (await page.evaluate(() => window.softphone.getStats())).inbound?.packetsReceived ?? 0;
    return waitStats(page, (s) => s.inbound?.packetsReceived >= from + n, timeout);
  }

  test(
    '(b) alice (browser) calls 1000 (sipp UAS, PCMU, RTP echo): audio comes back, hang up sends BYE to the phone',
    T,
    diagnosed(async ({ open, sipp }) => {
      const uas = await echoPhone(sipp, 'uas-echo.xml');

      const alice = await open('alice');
      assert.equal(
        await alice.evaluate(([u, p]) => window.softphone.register(u, p), ['alice', USERS.alice]),
        'registered',
      );
      assert.equal(await alice.evaluate(() => window.softphone.call('1000')), true);
      await waitState(alice, (s) => s.call === 'active' && s.peer === '1000', 15_000);

      // The B2BUA sends the browser's audio to the phone as PCMU; sipp
      // echoes it; the B2BUA sends it back to the browser over SRTP.
      // Polled until half a second of it (25 packets of 20 ms) came back,
      // not only the first packet.
      const stats = await waitStats(
        alice,
        (s) => s.inbound?.packetsReceived >= 25 && s.outbound?.packetsSent > 0,
        15_000,
      );
      assert.ok(stats.inbound.packetsReceived > 0);
      assert.equal(stats.connectionState, 'connected');
      assert.match(stats.codec || '', /PCMU/i, 'the phone answered PCMU alone');

      await alice.evaluate(() => window.softphone.hangup());
      await waitState(alice, (s) => s.call === 'idle');
      // uas-echo.xml exits 0 only after it got (and answered) a BYE.
      await expectExit(uas, 10_000, 'the phone should get BYE');
      assert.match(await uas.trace(), /^BYE sip:/m, 'the phone got a BYE');
    }),
  );

  test(
    '(d) alice (browser) in a call with 1000 (sipp, RTP echo) loses her WebSocket: the page reconnects, audio goes on, the BYE comes over the new one',
    { timeout: 90_000 },
    diagnosed(async ({ open, sipp }) => {
      const survived = await metric('switchboard_call_reconnects_total');
      const { uas, relay, alice } = await aliceCallsHangingUpPhone(open, sipp);

      relay.cut();
      await waitState(alice, (s) => s.registration === 'disconnected', 5_000);
      // The media never went over the WebSocket: it goes on.
      await moreAudio(alice, 25, 5_000);
      assert.equal((await state(alice)).call, 'active');

      // JsSIP reconnects (after 2 s) and registers its instance again.
      await waitState(alice, (s) => s.registration === 'registered', 20_000);
      assert.equal(relay.sockets.length, 2);
      assert.match(relay.sockets[1].sent.find((m) => m.startsWith('REGISTER ')) || '', /reg-id=1;\+sip\.instance="<urn:uuid:/);
      assert.equal((await state(alice)).call, 'active');
      assert.equal(await metric('switchboard_call_reconnects_total'), survived + 1);
      const stats = await moreAudio(alice, 25, 10_000);
      assert.equal(stats.connectionState, 'connected');

      // The browser's DTMF goes to the phone as INFO over the new
      // WebSocket; the phone hangs up, and its BYE reaches the page over
      // the new WebSocket.
      assert.equal(await alice.evaluate(() => window.softphone.dtmf('5')), true);
      const end = await waitState(alice, (s) => s.call === 'idle', 15_000);
      assert.equal(end.error, '');
      await expectExit(uas, 10_000, 'the phone should get its INFO, send BYE and get 200');
      assert.ok(relay.sockets[1].received.some((m) => m.startsWith('BYE ')), 'the BYE came over the new WebSocket');
      assert.ok(!relay.sockets[0].received.some((m) => m.startsWith('BYE ')));
      assert.equal((await alice.evaluate(() => window.softphone.history()))[0].outcome, 'answered');
    }),
  );

  test(
    '(e) alice restarts ICE (restartIce()) in a call with 1000: the gateway answers on her leg alone, audio goes on',
    T,
    diagnosed(async ({ open, sipp }) => {
      const { uas, relay, alice } = await aliceCallsHangingUpPhone(open, sipp);
      const restarts = await metric('switchboard_ice_restarts_total');

      assert.equal(await alice.evaluate(() => window.softphone.restartIce()), true);
      await waitState(alice, (s) => s.iceRestarts === 1, 10_000);
      assert.equal(await metric('switchboard_ice_restarts_total'), restarts + 1);
      const stats = await moreAudio(alice, 25, 10_000);
      assert.equal(stats.iceConnectionState === 'connected' || stats.iceConnectionState === 'completed', true);

      // The re-INVITE had new ICE credentials and the same DTLS
      // fingerprint; so had the gateway's answer.
      const attr = (sdp, name) => (new RegExp(`^a=${name}:(.*)$`, 'm').exec(sdp) || [])[1];
      const invites = relay.sockets[0].sent.filter((m) => m.startsWith('INVITE '));
      const answers = relay.sockets[0].received.filter((m) => /^SIP\/2\.0 200 .*[\s\S]*CSeq: \d+ INVITE/.test(m) && m.includes('v=0'));
      assert.equal(invites.length >= 2, true, 'an initial INVITE and the restart');
      const [first, again] = [invites[0], invites.at(-1)];
      assert.notEqual(attr(again, 'ice-ufrag'), attr(first, 'ice-ufrag'));
      assert.equal(attr(again, 'fingerprint'), attr(first, 'fingerprint'));
      assert.notEqual(attr(answers.at(-1), 'ice-ufrag'), attr(answers[0], 'ice-ufrag'));
      assert.equal(attr(answers.at(-1), 'fingerprint'), attr(answers[0], 'fingerprint'));

      // The phone saw no re-INVITE: its scenario fails on any request but
      // the INFO that makes it hang up.
      assert.equal(await alice.evaluate(() => window.softphone.dtmf('5')), true);
      await waitState(alice, (s) => s.call === 'idle', 15_000);
      await expectExit(uas, 10_000, 'the phone should see nothing of the restart, then get its INFO');
    }),
  );

  test(
    '(c) 1000 (sipp UAC, PCMU from a pcap) calls alice (browser, auto-answer): audio arrives, BYE from the phone ends the call',
    T,
    diagnosed(async ({ open, sipp }) => {
      const alice = await open('alice', '?autoanswer=1');
      assert.equal(
        await alice.evaluate(([u, p]) => window.softphone.register(u, p), ['alice', USERS.alice]),
        'registered',
      );

      const uac = sipp('uac-1000', await pcapCallerArgs({ callee: 'alice', domain: gateway.domain, password: USERS[1000] }));

      await waitState(alice, (s) => s.call === 'active' && s.peer === '1000', 15_000);
      // The pcap's PCMU goes to the B2BUA, which sends it to the browser.
      // Half a second of it (25 packets), and the tone decoded as sound.
      const stats = await waitStats(
        alice,
        (s) => s.inbound?.packetsReceived >= 25 && s.inbound.audioLevel > 0.01,
        5_000,
      );
      assert.ok(stats.inbound.packetsReceived > 0);
      assert.match(stats.codec || '', /PCMU/i, 'the phone offered PCMU alone');

      // The UAC hangs up after 6 s of audio: the browser's call ends.
      const end = await waitState(alice, (s) => s.call === 'idle', 15_000);
      assert.equal(end.error, '');
      await expectExit(uac, 10_000, 'the UAC should get 200 for its BYE');
      const history = await alice.evaluate(() => window.softphone.history());
      assert.equal(history[0].direction, 'in');
      assert.equal(history[0].outcome, 'answered');
      assert.equal((await state(alice)).registration, 'registered');
    }),
  );

  test(
    '(f) 1000 (sipp UAS) transfers alice (browser) to carol (browser) with REFER: alice follows, they talk',
    T,
    diagnosed(async ({ open, sipp }) => {
      const uas = await transferringPhone(sipp, { password: USERS[1000], domain: gateway.domain, target: 'carol', dir });

      const carol = await open('carol', '?autoanswer=1');
      const alice = await open('alice');
      for (const [page, user] of [[carol, 'carol'], [alice, 'alice']]) {
        assert.equal(await page.evaluate(([u, p]) => window.softphone.register(u, p), [user, USERS[user]]), 'registered');
      }
      assert.equal(await alice.evaluate(() => window.softphone.call('1000')), true);
      await waitState(alice, (s) => s.call === 'active' && s.peer === '1000', 15_000);
      await waitStats(alice, (s) => s.inbound?.packetsReceived >= 25, 15_000);

      // The desk phone's signal to transfer (uas-transfer.xml waits for
      // an INFO): a DTMF tone, which the page sends as SIP INFO.
      assert.equal(await alice.evaluate(() => window.softphone.dtmf('1')), true);
      const a = await waitState(alice, (s) => s.call === 'active' && s.peer === 'carol', 15_000);
      assert.equal(a.transferredFrom, '1000');
      await waitState(carol, (s) => s.call === 'active' && s.peer === 'alice', 15_000);
      // uas-transfer.xml exits 0 only once the final NOTIFY said 200 and
      // the BYE that ends the transferred call came.
      await expectExit(uas, 15_000, 'the phone should see the transfer succeed and get BYE');
      const notifies = (await uas.trace()).split(/^-{10,}.*$/m).filter((m) => /^NOTIFY /m.test(m));
      assert.ok(notifies.length >= 2, `the phone got ${notifies.length} NOTIFYs`);
      assert.match(notifies.at(-1), /^SIP\/2\.0 200 /m, 'the final NOTIFY says the target answered');
      for (const page of [alice, carol]) {
        const before = (await page.evaluate(() => window.softphone.getStats()))?.inbound?.packetsReceived ?? 0;
        await waitStats(page, (s) => s.inbound?.packetsReceived > before + 25 && s.outbound?.packetsSent > 0, 15_000);
      }
      await alice.evaluate(() => window.softphone.hangup());
      await waitState(carol, (s) => s.call === 'idle');
    }),
  );
});

function clusterSkipReason() {
  return redisUnavailable() || skipReason();
}

// Cluster mode (issue 13) with a real browser: two gateways share a
// redis-server. Chromium registers alice at gateway 2; a sipp phone calls
// her through gateway 1, which sends the call to gateway 2; gateway 2,
// which holds her WebSocket, bridges it and relays the audio.
describe('a call across two gateways of a cluster (Redis)', { skip: mustRun(clusterSkipReason()) }, () => {
  let build;
  let redis;
  let g1;
  let g2;
  let browser;
  let dir;

  before(
    async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-cluster-'));
      await writeFile(path.join(dir, 'pcmu.pcap'), pcmuPcap(6));
      redis = await startRedis(dir);
      build = await buildGateway();
      const env = (ice, rtp) => ({
        SWITCHBOARD_REDIS_URL: redis.url,
        SWITCHBOARD_ICE_PORT: String(ice),
        SWITCHBOARD_RTP_PORTS: rtp,
      });
      g1 = await startGateway({ bin: build.bin, users: USERS, env: env(await freeUdpPort(), '21000-21999') });
      g2 = await startGateway({ bin: build.bin, users: USERS, env: env(await freeUdpPort(), '22000-22999') });
      browser = await launchBrowser();
    },
    { timeout: 300_000 },
  );

  after(async () => {
    killSipps();
    await browser?.close();
    const stopped = [await g1?.stop(), await g2?.stop()];
    await redis?.stop();
    await build?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
    for (const [i, st] of stopped.entries()) {
      if (st) assert.ok(st.clean, `gateway ${i + 1} did not stop cleanly on SIGTERM: ${JSON.stringify(st)}`);
    }
  });

  test(
    '1000 (sipp UAC) at gateway 1 calls alice (Chromium, auto-answer) at gateway 2: gateway 2 bridges, audio arrives',
    T,
    async () => {
      const marks = [g1.logMark(), g2.logMark()];
      const page = await browser.newPage();
      const problems = watchPage(page);
      const trace = [];
      traceWebSocket(page, (line) => trace.push(line));
      let uac;
      try {
        await page.goto(`${g2.url}/?autoanswer=1`);
        await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, { timeout: 10_000 });
        assert.equal(
          await page.evaluate(([u, p]) => window.softphone.register(u, p), ['alice', USERS.alice]),
          'registered',
        );

        const caller = await pcapCallerArgs({ callee: 'alice', domain: g1.domain, password: USERS[1000] });
        uac = startSipp('uac-1000', [...caller, g1.sipUdp], { dir });

        await waitState(page, (s) => s.call === 'active' && s.peer === '1000', 15_000);
        const stats = await waitStats(
          page,
          (s) => s.inbound?.packetsReceived >= 25 && s.inbound.audioLevel > 0.01,
          5_000,
        );
        assert.match(stats.codec || '', /PCMU/i, 'the phone offered PCMU alone');

        const end = await waitState(page, (s) => s.call === 'idle', 15_000);
        assert.equal(end.error, '');
        await expectExit(uac, 10_000, 'the UAC should get 200 for its BYE');
        // The browser's instance ran the B2BUA; the phone's proxied.
        assert.match(g2.logSince(marks[1]), /msg="call answered" component=b2bua/);
        assert.doesNotMatch(g1.logSince(marks[0]), /component=b2bua/);
        assert.deepEqual(problems, []);
      } catch (err) {
        throw await failureReport(err, {
          pages: [{ label: 'alice', page, problems, trace }],
          sipps: uac ? [uac] : [],
          state,
          logs: {
            'gateway 1 log': g1.logSince(marks[0]),
            'gateway 2 log': g2.logSince(marks[1]),
            'redis-server log': redis.log(),
          },
        });
      } finally {
        await page.close().catch(() => {});
        await uac?.kill();
      }
    },
  );
});
