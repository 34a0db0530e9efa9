// Video calls between the softphone and a pion-based SIP video phone
// (test/cmd/videophone: synthesised VP8 or H.264 over plain RTP/AVP),
// through the real gateway's B2BUA. Chromium's fake camera on the WebRTC
// side. Both directions: frames decoded in the browser (getStats), key
// frames seen by the phone; a key-frame request of the browser reaching
// the phone as RTCP PLI (a phone that offered a=rtcp-fb) or as SIP INFO
// picture_fast_update (one that did not); video added mid-call.
//
// Run with `npm run test:gateway`, or alone after `npm run build`:
// `node --test test/pionphone.test.js`. Needs Go (it builds the gateway
// and the phone).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { distBuilt, gatewayUnavailable, mustRun } from './gateway.js';
import { waitFor, waitState } from './helpers.js';
import { buildPionPhone, pionPhoneMissing, startPionPhone } from './pionphone.js';
import { gatewaySuite, phoneSession } from './suite.js';

const USERS = { alice: 'alice-secret', 1000: 'phone-secret-1000' };
const T = { timeout: 90_000 };

function skipReason() {
  const missing = pionPhoneMissing();
  if (missing) return missing;
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

const stats = (page) => page.evaluate(() => window.softphone.getStats());

describe('video calls between the softphone and a pion SIP video phone', { skip: mustRun(skipReason()) }, () => {
  const ctx = gatewaySuite({ users: USERS, env: { SWITCHBOARD_DOMAIN: '127.0.0.1' } });
  let build;
  before(
    async () => {
      build = await buildPionPhone();
    },
    { timeout: 300_000 },
  );
  after(() => build?.cleanup());

  // session runs fn({ open, phone }) (phoneSession): open(query) is
  // alice's softphone, phone(options) the pion phone registered as 1000
  // (startPionPhone), stopped after the test, its events in the failure
  // report.
  const session = (fn) =>
    phoneSession(
      ctx,
      {
        user: 'alice',
        label: 'videophone',
        start: (opts) => startPionPhone({ bin: build.bin, gateway: ctx.gateway, user: '1000', password: USERS[1000], ...opts }),
        ready: (p) => p.next('registered'),
      },
      fn,
    );

  // decodes waits until the page decodes more than `after` + 10 frames of
  // the phone's video (64×48) in codec (a regexp of the MIME type).
  const decodes = (page, codec, after = 0) =>
    waitFor(
      `the browser to decode the phone's ${codec} video`,
      () => stats(page),
      (s) => s.video?.inbound?.framesDecoded > after + 10 && codec.test(s.video.codec || ''),
      30_000,
    );

  // keyFrameAsked loses a few of the phone's video frames (the phone
  // skips their packets), so that the browser's decoder stalls and
  // Chromium asks for a key frame; it resolves with the phone's report of
  // the request, of kind 'pli' (RTCP) or 'info_picture_fast_update', and
  // checks that the phone answered with a key frame the browser decoded.
  async function keyFrameAsked(page, ph, kind) {
    const before = (await stats(page)).video.inbound;
    const from = ph.events.length;
    ph.send('gap');
    const req = await ph.next(kind, () => true, 15_000, from);
    const reason = kind === 'pli' ? 'pli' : 'info';
    await ph.next('keyframe_sent', (e) => e.reason === reason, 5_000, from);
    await waitFor(
      'the browser to decode the new key frame',
      () => stats(page),
      (s) => s.video.inbound.keyFramesDecoded > before.keyFramesDecoded && s.video.inbound.framesDecoded > before.framesDecoded,
      10_000,
    );
    return req;
  }

  test('the browser calls the phone with VP8: frames decoded both ways, its PLI reaches the phone as RTCP', T, () =>
    session(async ({ open, phone }) => {
      const ph = await phone({ video: 'vp8', rtcpFb: true });
      const alice = await open();
      await alice.evaluate(() => window.softphone.video(true));
      assert.equal(await alice.evaluate(() => window.softphone.call('1000')), true);
      const up = await ph.next('call', (e) => e.state === 'up');
      assert.equal(up.video, true, 'the call has video on the phone side');
      await waitState(alice, (s) => s.call === 'active', 15_000);
      const s = await decodes(alice, /VP8/i);
      assert.equal(s.video.inbound.frameWidth, 64, 'the phone’s picture size');
      // The phone sees the browser's key frames: the fake camera's 640×480.
      const key = await ph.next('keyframe', () => true, 15_000);
      assert.deepEqual([key.codec, key.width, key.height], ['vp8', 640, 480]);
      const pli = await keyFrameAsked(alice, ph, 'pli');
      const sent = await ph.next('keyframe_sent');
      assert.equal(pli.media_ssrc, sent.ssrc, `the PLI names the phone's stream: ${JSON.stringify(pli)}`);
      assert.equal(ph.count('info_picture_fast_update'), 0, 'a phone with rtcp-fb gets RTCP, not INFO');
      await alice.evaluate(() => window.softphone.hangup());
      await ph.next('call', (e) => e.state === 'ended');
      await waitState(alice, (st) => st.call === 'idle');
    }),
  );

  test('the phone calls the browser with H.264: frames decoded both ways, the PLI reaches the phone as INFO', T, () =>
    session(async ({ open, phone }) => {
      const alice = await open('?autoanswer=1');
      await alice.evaluate(() => window.softphone.video(true));
      const ph = await phone({ video: 'h264', dial: 'alice' });
      const up = await ph.next('call', (e) => e.state === 'up', 20_000);
      assert.equal(up.video, true, 'the browser answered with video');
      await waitState(alice, (s) => s.call === 'active', 20_000);
      const s = await decodes(alice, /H264/i);
      assert.ok(s.video.inbound.keyFramesDecoded >= 1, 'a key frame first');
      assert.equal(s.video.inbound.frameWidth, 64, 'the phone’s picture size');
      // The phone sees IDR pictures of the browser's H.264.
      const key = await ph.next('keyframe', () => true, 15_000);
      assert.equal(key.codec, 'h264');
      await waitFor('the browser to send H.264', () => stats(alice), (x) => x.video?.outbound?.framesEncoded > 10, 15_000);
      // The phone offered no rtcp-fb: the gateway asks it by SIP INFO.
      const info = await keyFrameAsked(alice, ph, 'info_picture_fast_update');
      assert.match(info.content_type, /application\/media_control\+xml/);
      assert.equal(ph.count('pli') + ph.count('fir'), 0, 'no RTCP feedback to a phone that did not offer it');
      ph.send('bye');
      await ph.next('call', (e) => e.state === 'ended');
      await waitState(alice, (st) => st.call === 'idle', 10_000);
    }),
  );

  test('the browser adds its camera mid-call: the phone gets the re-INVITE and key frames', T, () =>
    session(async ({ open, phone }) => {
      const ph = await phone({ video: 'vp8', rtcpFb: true });
      const alice = await open();
      assert.equal(await alice.evaluate(() => window.softphone.call('1000')), true);
      const up = await ph.next('call', (e) => e.state === 'up');
      assert.equal(up.video, false, 'an audio call first');
      await waitState(alice, (s) => s.call === 'active', 15_000);
      await ph.next('audio_first_packet');
      assert.equal(ph.count('video_first_packet'), 0, 'no video before the camera is on');
      assert.equal(await alice.evaluate(() => window.softphone.video(true)), true);
      const re = await ph.next('reinvite', (e) => e.video === true, 15_000);
      assert.ok(re);
      const key = await ph.next('keyframe', () => true, 15_000);
      assert.deepEqual([key.width, key.height], [640, 480]);
      // And the phone's video now reaches the browser too.
      await decodes(alice, /VP8/i);
      await alice.evaluate(() => window.softphone.hangup());
      await ph.next('call', (e) => e.state === 'ended');
    }),
  );
});
