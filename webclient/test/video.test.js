// Video calls of the softphone against the real gateway. Two pages (each
// its own browser context) sign in to the gateway and call each other
// through its proxy, which passes the SDP untouched: the cameras are
// Chromium's fake device (--use-fake-device-for-media-stream, a moving
// test pattern), so frames are really encoded, sent over loopback and
// decoded. Each test checks getStats (framesDecoded, frame size) and the
// <video> elements, not just the signalling.
//
// Run with `npm run test:gateway` (it builds the page first), or alone:
// `npm run build && node --test test/video.test.js`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { distBuilt, gatewayUnavailable, mustRun } from './gateway.js';
import { softphoneState as state, waitFor, waitState } from './helpers.js';
import { gatewaySuite, pageSession } from './suite.js';

const USERS = { alice: 'alice-secret', bob: 'bob-secret' };
const T = { timeout: 90_000 };

function skipReason() {
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

const stats = (page) => page.evaluate(() => window.softphone.getStats());

// videoIn waits until page decodes video frames: more than `after` of
// them, with a picture size.
function videoIn(page, what, after = 0) {
  return waitFor(
    what,
    () => stats(page),
    (s) => s.video?.inbound?.framesDecoded > after + 10 && s.video.inbound.frameWidth > 0 && s.video.inbound.frameHeight > 0,
    20_000,
  );
}

// elementVideo is what the page's <video> elements show: their size in
// pixels of the picture (0 before a frame) and whether they are visible.
function elementVideo(page) {
  return page.evaluate(() => {
    const v = (id) => {
      const el = document.getElementById(id);
      const r = el.getBoundingClientRect();
      return { width: el.videoWidth, height: el.videoHeight, visible: !el.hidden && r.width > 0 && r.height > 0, label: el.getAttribute('aria-label') };
    };
    return { remote: v('remote-video'), local: v('local-video'), area: !document.getElementById('video').hidden };
  });
}

const sdpOf = (text) => text.slice(text.indexOf('\r\n\r\n') + 4);
const firstLine = (text) => text.slice(0, text.indexOf('\r\n'));

describe('video calls of the softphone through the gateway', { skip: mustRun(skipReason()) }, () => {
  const ctx = gatewaySuite({ users: USERS });
  const session = (fn) => pageSession(ctx, fn);

  async function connect(alice, bob) {
    assert.equal(await alice.evaluate(() => window.softphone.call('bob')), true);
    await waitState(bob, (s) => s.call === 'active' && s.peer === 'alice', 15_000);
    await waitState(alice, (s) => s.call === 'active' && s.peer === 'bob', 15_000);
  }

  async function hangup(alice, bob) {
    await alice.evaluate(() => window.softphone.hangup());
    await waitState(bob, (s) => s.call === 'idle', 10_000);
    await waitState(alice, (s) => s.call === 'idle', 10_000);
  }

  test('video on before the call: frames decoded both ways, SDP passed through untouched', T, () =>
    session(async ({ open, sip }) => {
      const alice = await open('alice');
      const bob = await open('bob', { query: '?autoanswer=1' });
      // The toggle before the call: the choice for the next one, said in
      // the live region.
      await alice.getByRole('button', { name: /Video off/ }).click();
      await bob.evaluate(() => window.softphone.video(true));
      assert.equal((await state(alice)).videoWanted, true);
      assert.equal(await alice.locator('#video-status').textContent(), 'Video on for the next call.');
      assert.equal(await alice.locator('#video-toggle').getAttribute('aria-pressed'), 'true');

      await connect(alice, bob);
      for (const [page, peer] of [
        [alice, 'bob'],
        [bob, 'alice'],
      ]) {
        const s = await videoIn(page, `${page === alice ? 'alice' : 'bob'} to decode video`);
        assert.match(s.video.codec || '', /^video\/(VP8|H264|VP9|AV1)$/i);
        assert.ok(s.video.outbound?.framesEncoded > 0, `${peer}'s side encodes`);
        assert.ok(s.inbound?.packetsReceived > 0, 'audio flows beside the video');
        await waitState(page, (st) => st.video && st.remoteVideo);
        const v = await waitFor('the <video> elements to show pictures', () => elementVideo(page), (e) => e.remote.width > 0 && e.local.width > 0);
        assert.equal(v.area, true);
        assert.equal(v.remote.visible, true);
        assert.equal(v.local.visible, true);
        assert.equal(v.remote.label, `Video of ${peer}`);
      }

      // Proxied: the SDP bob received is the one alice sent, byte for
      // byte, with its video section.
      const sentInvite = sip(alice).find((f) => f.dir === 'sent' && firstLine(f.text).startsWith('INVITE '));
      const gotInvite = sip(bob).find((f) => f.dir === 'received' && firstLine(f.text).startsWith('INVITE '));
      assert.ok(sentInvite && gotInvite, 'the INVITE on both sides');
      assert.match(sdpOf(sentInvite.text), /^m=video /m);
      assert.equal(sdpOf(gotInvite.text), sdpOf(sentInvite.text));

      await hangup(alice, bob);
      const v = await elementVideo(alice);
      assert.equal(v.area, false, 'the video area goes with the call');
      assert.equal((await state(alice)).videoWanted, true, 'the toggle stays for the next call');
    }),
  );

  test('video added mid-call by each side with a re-INVITE, then taken off; the call goes on', T, () =>
    session(async ({ open, sip }) => {
      const alice = await open('alice');
      const bob = await open('bob', { query: '?autoanswer=1' });
      await connect(alice, bob);
      // Sound only: no video section offered, nothing decoded.
      const invite = sip(alice).find((f) => f.dir === 'sent' && firstLine(f.text).startsWith('INVITE '));
      assert.doesNotMatch(sdpOf(invite.text), /^m=video /m, 'an audio call offers no video');
      assert.equal((await stats(alice)).video, null);
      assert.equal(await alice.locator('#video').isHidden(), true);

      // Bob turns his camera on: a re-INVITE adds the video, alice sees it.
      assert.equal(await bob.evaluate(() => window.softphone.video(true)), true);
      const reinvites = () => sip(bob).filter((f) => f.dir === 'sent' && firstLine(f.text).startsWith('INVITE ')).length;
      assert.equal(reinvites(), 1, 'bob sent one re-INVITE');
      await videoIn(alice, 'alice to decode bob’s video');
      await waitState(alice, (s) => s.remoteVideo && !s.video);
      assert.equal(await alice.locator('#video-status').textContent(), "bob's video is on.");
      assert.equal(await bob.locator('#video-status').textContent(), 'Video on.');
      let v = await waitFor('alice’s remote <video>', () => elementVideo(alice), (e) => e.remote.width > 0);
      assert.equal(v.local.visible, false, 'alice sends no video');

      // Alice answers in kind, from the page's button.
      await alice.getByRole('button', { name: /Turn the camera on/ }).click();
      await waitState(alice, (s) => s.video && !s.videoChanging);
      const bobIn = await videoIn(bob, 'bob to decode alice’s video');
      assert.ok(bobIn.video.inbound.frameWidth > 0);

      // Bob turns his camera off: alice's picture of him goes, hers stays.
      const before = (await stats(bob)).video.inbound.framesDecoded;
      assert.equal(await bob.evaluate(() => window.softphone.video(false)), true);
      await waitState(alice, (s) => !s.remoteVideo && s.video, 15_000);
      assert.equal(await alice.locator('#video-status').textContent(), "bob's video is off.");
      v = await elementVideo(alice);
      assert.equal(v.remote.visible, false);
      assert.equal(v.local.visible, true);
      await videoIn(bob, 'bob to keep decoding alice’s video', before);
      const bs = await state(bob);
      assert.equal(bs.video, false);
      assert.equal(bs.call, 'active');
      // And on again: the SDP reuses its video section rather than adding one.
      assert.equal(await bob.evaluate(() => window.softphone.video(true)), true);
      const last = sip(bob).filter((f) => f.dir === 'sent' && firstLine(f.text).startsWith('INVITE ')).at(-1);
      assert.equal(sdpOf(last.text).match(/^m=video /gm).length, 1, 'one video section after off and on');
      await waitState(alice, (s) => s.remoteVideo, 15_000);
      await hangup(alice, bob);
    }),
  );

  for (const [name, viewport] of [
    ['a phone (375×667)', { width: 375, height: 667 }],
    ['a desktop (1280×800)', { width: 1280, height: 800 }],
  ]) {
    test(`a video call fits ${name}, its controls labelled`, T, () =>
      session(async ({ open, sip }) => {
        const alice = await open('alice', { viewport });
        const bob = await open('bob', { query: '?autoanswer=1' });
        await alice.evaluate(() => window.softphone.video(true));
        await bob.evaluate(() => window.softphone.video(true));
        await connect(alice, bob);
        await waitFor('both pictures on alice’s page', () => elementVideo(alice), (e) => e.remote.width > 0 && e.local.width > 0);
        const layout = await alice.evaluate(() => {
          const box = (sel) => {
            const r = document.querySelector(sel).getBoundingClientRect();
            return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height };
          };
          return {
            innerWidth,
            innerHeight,
            scrollWidth: document.documentElement.scrollWidth,
            area: box('#video'),
            remote: box('#remote-video'),
            local: box('#local-video'),
            hangup: box('#hangup'),
            toggle: box('#video-toggle'),
          };
        });
        assert.ok(layout.scrollWidth <= layout.innerWidth, `no sideways scrolling: ${JSON.stringify(layout)}`);
        for (const k of ['area', 'remote', 'local', 'hangup', 'toggle']) {
          assert.ok(layout[k].width > 0 && layout[k].left >= 0 && layout[k].right <= layout.innerWidth, `${k} within the width: ${JSON.stringify(layout)}`);
        }
        assert.ok(layout.area.height <= layout.innerHeight / 2 + 1, `the picture leaves room for the controls: ${JSON.stringify(layout)}`);
        for (const k of ['area', 'hangup']) {
          assert.ok(layout[k].top >= 0 && layout[k].bottom <= layout.innerHeight, `${k} on the first screen, without scrolling: ${JSON.stringify(layout)}`);
        }
        const inside = (a, b) => a.left >= b.left - 1 && a.right <= b.right + 1 && a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
        assert.ok(inside(layout.local, layout.area), 'the preview sits inside the picture');
        assert.ok(layout.local.width < layout.area.width / 2, 'the preview is small beside the other side’s picture');
        // Labelled for screen readers: the videos, the toggle, the region.
        assert.equal(await alice.getByRole('region', { name: 'Video' }).count(), 1);
        assert.equal(await alice.getByLabel('Video of bob').count(), 1);
        assert.equal(await alice.getByLabel('Your camera, as the other side sees it').count(), 1);
        assert.equal(await alice.getByRole('button', { name: 'Video on. Turn the camera off' }).getAttribute('aria-pressed'), 'true');
        assert.equal(await alice.locator('#video-status').getAttribute('aria-live'), 'polite');
        await alice.screenshot({ path: new URL(`video-${viewport.width}x${viewport.height}.png`, import.meta.url).pathname });
        await hangup(alice, bob);
      }),
    );
  }
});
