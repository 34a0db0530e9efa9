// Video calls between the softphone and a SIP video phone, through the
// real gateway's B2BUA: Chromium (fake camera) on the WebRTC side, baresip
// (Debian's; fakevideo source, VP8 or H.264 over plain RTP/AVP) on the SIP
// side. Both directions; frames decoded in the browser (getStats), and the
// phone's own account of the video it received (its log).
//
// Run with `npm run test:gateway`, or alone after `npm run build`:
// `node --test test/videophone.test.js`. Needs baresip-core and
// baresip-ffmpeg (scripts/deps.sh installs them): without them it fails,
// saying so, under SWITCHBOARD_NO_SKIP=1 as make test sets it.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { baresipMissing, startBaresip } from './baresip.js';
import { distBuilt, gatewayUnavailable, mustRun } from './gateway.js';
import { softphoneState as state, waitFor, waitState } from './helpers.js';
import { gatewaySuite, phoneSession } from './suite.js';

const USERS = { alice: 'alice-secret', 1000: 'phone-secret-1000' };
const T = { timeout: 90_000 };
const ADMIN_TOKEN = 'videophone-test-admin-token-0123456789';

function skipReason() {
  const missing = baresipMissing();
  if (missing) return missing;
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

// RECEIVING is baresip's line for the first video picture it decoded.
const RECEIVING = /video: receiving with resolution (\d+) x (\d+)/;

const stats = (page) => page.evaluate(() => window.softphone.getStats());

describe('video calls between the softphone and a SIP video phone (baresip)', { skip: mustRun(skipReason()) }, () => {
  // The domain is the gateway's address, so that baresip needs no DNS.
  const ctx = gatewaySuite({ users: USERS, env: { SWITCHBOARD_DOMAIN: '127.0.0.1', SWITCHBOARD_ADMIN_TOKEN: ADMIN_TOKEN } });

  // session runs fn({ open, phone }) (phoneSession): open(query) is
  // alice's softphone, phone(options) a baresip registered as 1000
  // (startBaresip), stopped after the test, its log in the failure report.
  const session = (fn) =>
    phoneSession(
      ctx,
      { user: 'alice', label: 'baresip', start: (opts) => startBaresip({ gateway: ctx.gateway, user: '1000', password: USERS[1000], ...opts }) },
      fn,
    );

  // callVideo is the video counters of the one bridged call (admin API).
  async function callVideo() {
    const res = await fetch(`${ctx.gateway.url}/admin/calls`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(res.status, 200);
    const { calls } = await res.json();
    assert.equal(calls.length, 1, `one bridged call: ${JSON.stringify(calls)}`);
    return calls[0];
  }

  // decodes waits until the page decodes more than `after` video frames
  // of codec (a regexp of the MIME type).
  const decodes = (page, codec, after = 0) =>
    waitFor(
      `the browser to decode the phone's ${codec} video`,
      () => stats(page),
      (s) => s.video?.inbound?.framesDecoded > after + 10 && s.video.inbound.frameWidth > 0 && codec.test(s.video.codec || ''),
      30_000,
    );

  test('the browser calls the phone with video (VP8): frames decoded both ways', T, () =>
    session(async ({ open, phone }) => {
      const ph = await phone({ video: 'VP8' });
      await ph.registered();
      const alice = await open();
      await alice.evaluate(() => window.softphone.video(true));
      assert.equal(await alice.evaluate(() => window.softphone.call('1000')), true);
      await waitState(alice, (s) => s.call === 'active', 15_000);
      const s = await decodes(alice, /VP8/i);
      assert.equal(s.video.inbound.frameWidth, 352, 'the phone’s picture size');
      assert.ok(s.video.outbound?.framesEncoded > 0, 'the browser sends video too');
      await waitState(alice, (st) => st.video && st.remoteVideo);
      // The phone decodes the browser's video: baresip logs the size of
      // the first picture it decodes (the fake camera's 640×480).
      const [, w, h] = await ph.until('the phone to decode the browser’s video', RECEIVING, 15_000);
      assert.deepEqual([w, h], ['640', '480']);
      // The video went both ways through the bridge, and a key-frame
      // request from the phone's side (baresip's PLI, or the gateway's own
      // when the phone's stream starts) reached the browser, which
      // answered with a key frame. (Chromium asks the phone for one only
      // when it misses one, which a clean loopback call does not do: the
      // browser-to-phone PLI is tested in package media with pion.)
      const { media } = await callVideo();
      assert.ok(media.video.packets_to_web > 0 && media.video.packets_to_rtp > 0, `video both ways: ${JSON.stringify(media.video)}`);
      assert.ok(media.video.keyframe_requests_to_browser >= 1, `a key-frame request to the browser: ${JSON.stringify(media.video)}`);
      const out = await waitFor('the browser to hear the PLI', () => stats(alice), (x) => x.video?.outbound?.pliCount >= 1, 10_000);
      assert.ok(out.video.outbound.keyFramesEncoded >= 1);
      await alice.evaluate(() => window.softphone.hangup());
      await waitState(alice, (st) => st.call === 'idle');
    }),
  );

  test('the phone calls the browser with video (H.264), and the browser adds its camera mid-call', T, () =>
    session(async ({ open, phone }) => {
      const alice = await open('?autoanswer=1');
      const ph = await phone({ video: 'H264', dial: `sip:alice@${ctx.gateway.sipUdp}` });
      await waitState(alice, (s) => s.call === 'active', 20_000);
      const s = await decodes(alice, /H264/i);
      assert.ok(s.video.inbound.keyFramesDecoded >= 1, 'a key frame first');
      assert.equal((await state(alice)).video, false, 'answered without the camera');
      assert.doesNotMatch(ph.log(), RECEIVING, 'the phone got no video before the camera was on');
      // Alice turns her camera on: a re-INVITE from the browser, through
      // the gateway, to the phone.
      assert.equal(await alice.evaluate(() => window.softphone.video(true)), true);
      await waitFor('the browser to send H.264', () => stats(alice), (x) => x.video?.outbound?.framesEncoded > 10, 15_000);
      await decodes(alice, /H264/i, s.video.inbound.framesDecoded);
      const [, w, h] = await ph.until('the phone to decode the browser’s video', RECEIVING, 15_000);
      assert.deepEqual([w, h], ['640', '480']);
      await alice.evaluate(() => window.softphone.hangup());
      await waitState(alice, (st) => st.call === 'idle');
    }),
  );
});
