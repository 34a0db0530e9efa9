// Two softphone pages calling each other through test/fakegateway.js: real
// JsSIP over a real WebSocket, real WebRTC between two Chromium pages on
// loopback. This checks the page's side of a call (ICE without STUN, answer,
// DTMF, hold, errors) until the gateway can take the fake's place.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createFakeGateway } from './fakegateway.js';
import { mustRun } from './gateway.js';
import { distDir, launchBrowser, softphoneState as state, startStaticServer, waitState } from './helpers.js';

const built = existsSync(path.join(distDir, 'index.html'));
const T = { timeout: 30_000 };
const screenshotDir = path.dirname(new URL(import.meta.url).pathname);
const USERS = { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw' };

describe('calls through a fake gateway', { skip: mustRun(built ? false : 'dist/ is not built: run npm run build') }, () => {
  let gateway;
  let server;
  let browser;

  before(async () => {
    gateway = createFakeGateway({ users: USERS, responses: { busy: 486, gone: 404 } });
    server = await startStaticServer({
      onUpgrade: gateway.onUpgrade,
      routes: {
        '/config.json': (req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end('{"domain":"sip.example.test","wsPath":"/ws"}');
        },
      },
    });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    gateway?.close();
    await server?.close();
  });

  // phone opens a page and signs in: by the form (ui) or by the hook.
  async function phone(user, { query = '', ui = false } = {}) {
    const page = await browser.newPage();
    await page.goto(`${server.url}/${query}`);
    await page.waitForFunction(() => window.softphone && window.softphone.state !== null);
    if (ui) {
      await page.getByLabel('User', { exact: true }).fill(user);
      await page.getByLabel('Password').fill(USERS[user]);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await waitState(page, (s) => s.registration === 'registered');
    } else {
      const outcome = await page.evaluate(([u, p]) => window.softphone.register(u, p), [user, USERS[user]]);
      assert.equal(outcome, 'registered');
    }
    return page;
  }

  test('a wrong password sends the user back to the form, in words', T, async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/`);
    await page.getByLabel('User', { exact: true }).fill('alice');
    await page.getByLabel('Password').fill('not-it');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Wrong user name or password.' }).waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Sign in' }).isVisible(), true);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'password');
    await page.close();
  });

  test('alice calls bob: audio both ways, DTMF, mute, hold, hang up', T, async () => {
    const alice = await phone('alice', { ui: true });
    const bob = await phone('bob', { query: '?autoanswer=1' });
    assert.equal(await alice.locator('#who').textContent(), 'alice@sip.example.test');

    await alice.getByLabel('Number or SIP address').fill('bob');
    await alice.getByRole('button', { name: 'Call', exact: true }).click();
    await waitState(alice, (s) => s.call === 'active');
    await waitState(bob, (s) => s.call === 'active');
    assert.equal(await alice.evaluate(() => window.softphone.tone()), null, 'ringback stops on answer');
    assert.equal(await alice.getByRole('button', { name: 'Hang up' }).isVisible(), true);
    assert.match(await alice.getByRole('status').textContent(), /In a call with bob/);

    // Media flows both ways, over ICE found without STUN.
    for (const page of [alice, bob]) {
      await page.waitForFunction(
        async () => {
          const s = await window.softphone.getStats();
          return s && s.outbound?.packetsSent > 20 && s.inbound?.packetsReceived > 20;
        },
        null,
        { timeout: 10_000, polling: 250 },
      );
    }
    const stats = await alice.evaluate(() => window.softphone.getStats());
    assert.equal(stats.connectionState, 'connected');
    assert.match(stats.codec, /opus/i);
    assert.equal(await alice.evaluate(() => document.getElementById('remote-audio').srcObject !== null), true);
    // The level meter follows the call's microphone (the fake device beeps).
    await alice.waitForFunction(() => window.softphone.micLevel() > 0.2, null, { timeout: 8000 });
    await alice.waitForFunction(() => document.getElementById('timer').textContent !== '0:00', null, { timeout: 3000 });

    // DTMF from the dial pad, by click and by keyboard, arrives as INFO.
    await alice.getByRole('button', { name: '1', exact: true }).click();
    await alice.getByRole('button', { name: '# hash' }).click();
    await alice.keyboard.type('9');
    await waitState(bob, (s) => s.tonesReceived === '1#9');
    assert.equal(await alice.locator('#tones').textContent(), '1#9');
    assert.equal(await alice.getByLabel('Number or SIP address').inputValue(), 'bob', 'tones do not go in the number');

    // Mute and hold are toggle buttons.
    const mute = alice.getByRole('button', { name: 'Mute' });
    await mute.click();
    assert.equal(await mute.getAttribute('aria-pressed'), 'true');
    assert.equal((await state(alice)).muted, true);
    const hold = alice.getByRole('button', { name: 'Hold' });
    await hold.click();
    await waitState(alice, (s) => s.held);
    await waitState(bob, (s) => s.remoteHeld);
    assert.equal(await hold.getAttribute('aria-pressed'), 'true');
    await alice.screenshot({ path: path.join(screenshotDir, 'screenshot-call.png'), fullPage: true });
    await hold.click();
    await waitState(alice, (s) => !s.held);
    await mute.click();

    await alice.getByRole('button', { name: 'Hang up' }).click();
    await waitState(alice, (s) => s.call === 'idle');
    await waitState(bob, (s) => s.call === 'idle');
    assert.equal((await state(bob)).status, 'alice hung up.');
    const [aliceLog, bobLog] = await Promise.all([alice, bob].map((p) => p.evaluate(() => window.softphone.history())));
    assert.equal(aliceLog[0].direction, 'out');
    assert.equal(aliceLog[0].outcome, 'answered');
    assert.equal(bobLog[0].direction, 'in');
    assert.equal(bobLog[0].peer, 'alice');
    assert.equal(await alice.getByRole('button', { name: /^Call bob again/ }).count(), 1);
    await Promise.all([alice.close(), bob.close()]);
  });

  test('an incoming call rings, can be declined, and the caller is told', T, async () => {
    const carol = await phone('carol', { ui: true });
    const bob = await phone('bob');
    await bob.evaluate(() => window.softphone.call('carol'));
    await waitState(carol, (s) => s.call === 'incoming');
    const answer = carol.getByRole('button', { name: 'Answer call from bob' });
    assert.equal(await answer.isVisible(), true);
    assert.equal(await carol.evaluate(() => document.activeElement.id), 'answer', 'focus goes to Answer');
    assert.equal(await carol.evaluate(() => window.softphone.tone()), 'ring');
    assert.equal(await carol.title(), 'Incoming call – Switchboard softphone');
    await waitState(bob, (s) => s.call === 'ringing');
    assert.equal(await bob.evaluate(() => window.softphone.tone()), 'ringback');
    await carol.screenshot({ path: path.join(screenshotDir, 'screenshot-incoming.png') });

    await carol.getByRole('button', { name: 'Decline call from bob' }).click();
    await waitState(carol, (s) => s.call === 'idle');
    await waitState(bob, (s) => s.call === 'idle');
    assert.equal(await carol.evaluate(() => window.softphone.tone()), null);
    assert.equal((await state(bob)).error, 'carol refused the call.');
    assert.equal((await carol.evaluate(() => window.softphone.history()))[0].outcome, 'declined');

    // Once more, answered by keyboard: the focus is already on Answer.
    await bob.evaluate(() => window.softphone.call('carol'));
    await waitState(carol, (s) => s.call === 'incoming');
    await carol.keyboard.press('Enter');
    await waitState(carol, (s) => s.call === 'active');
    await waitState(bob, (s) => s.call === 'active');
    await bob.evaluate(() => window.softphone.hangup());
    await waitState(carol, (s) => s.call === 'idle');
    assert.equal((await state(carol)).status, 'bob hung up.');
    await Promise.all([carol.close(), bob.close()]);
  });

  test('busy and not found, in words', T, async () => {
    const alice = await phone('alice');
    for (const [target, words] of [
      ['busy', 'busy is busy.'],
      ['gone', 'gone was not found. Check the number or address.'],
      ['nobody', 'nobody was not found. Check the number or address.'],
    ]) {
      await alice.getByLabel('Number or SIP address').fill(target);
      await alice.getByRole('button', { name: 'Call', exact: true }).click();
      await alice.getByRole('alert').filter({ hasText: words }).waitFor();
      assert.equal((await state(alice)).call, 'idle');
    }
    const log = await alice.evaluate(() => window.softphone.history());
    assert.deepEqual(log.map((e) => e.outcome), ['failed', 'failed', 'busy']);
    await alice.close();
  });

  test('a lost connection is shown, and JsSIP reconnects by itself', T, async () => {
    const alice = await phone('alice');
    gateway.dropAll();
    await alice.getByRole('alert').filter({ hasText: 'Connection to the gateway lost. Reconnecting…' }).waitFor();
    assert.equal(await alice.locator('#reg-text').textContent(), 'Offline, reconnecting');
    // JsSIP retries after 2 s at first.
    await waitState(alice, (s) => s.registration === 'registered', 15_000);
    assert.equal(await alice.getByRole('alert').textContent(), '');
    await alice.close();
  });
});
