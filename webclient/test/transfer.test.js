// Blind transfer with the softphone, against the real gateway (issue 12
// points 1, 3 and 5): three pages in headless Chromium (fake audio
// device) register as alice, bob and carol; bob and carol answer by
// themselves. alice calls bob and transfers him, from the page's
// "Transfer to" field with the keyboard, to carol: bob's page follows the
// REFER and calls carol, alice hears the outcome in words and her call
// ends; bob and carol then talk, with audio both ways. A transfer to
// someone who is not there fails: bob is back in his call with alice, and
// alice is told in plain words that the call goes on.
//
// Run with `npm run test:gateway`.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildGateway, mustRun, distBuilt, gatewayUnavailable, startGateway } from './gateway.js';
import { launchBrowser, waitFor, watchPage } from './helpers.js';

const USERS = { alice: 'alice-secret', bob: 'bob-secret', carol: 'carol-secret' };

function skipReason() {
  if (process.env.SWITCHBOARD_BIN) return false;
  if (!distBuilt()) return 'dist/ is not built, so the gateway would serve its placeholder: run npm run build';
  return gatewayUnavailable() || false;
}

const state = (page) => page.evaluate(() => window.softphone.state);
const stats = (page) => page.evaluate(() => window.softphone.getStats());

// audioFlows waits until page has received more packets than before and
// sends its own.
async function audioFlows(label, page) {
  const before = (await stats(page))?.inbound?.packetsReceived ?? 0;
  await waitFor(
    `${label}: audio both ways`,
    () => stats(page),
    (s) => ['connected', 'completed'].includes(s.iceConnectionState) && s.inbound?.packetsReceived > before + 10 && s.outbound?.packetsSent > 0,
  );
}

describe('transfer with the softphone', { skip: mustRun(skipReason()) }, () => {
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
    if (stopped) assert.ok(stopped.clean, `the gateway did not stop cleanly: ${JSON.stringify(stopped)}`);
  });

  // open loads the softphone for user and signs in.
  async function open(pages, user, query = '') {
    const page = await browser.newPage();
    pages.push({ label: user, page, problems: watchPage(page) });
    const res = await page.goto(`${gateway.url}/${query}`);
    assert.equal(res.status(), 200);
    await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, { timeout: 10_000 });
    assert.equal(await page.evaluate(([u, p]) => window.softphone.register(u, p), [user, USERS[user]]), 'registered');
    return page;
  }

  // transferFromPage types target in alice's "Transfer to" field and
  // presses Enter, as a keyboard user does.
  async function transferFromPage(alice, target) {
    const field = alice.getByLabel('Transfer to');
    await field.fill(target);
    await field.press('Enter');
  }

  async function run(fn) {
    const mark = gateway.logMark();
    const pages = [];
    try {
      await fn(pages);
      for (const p of pages) assert.deepEqual(p.problems, [], `${p.label}: page problems`);
    } catch (err) {
      const e = new Error(`${err.stack || err}\n--- gateway log of this test ---\n${gateway.logSince(mark)}`);
      e.cause = err;
      throw e;
    } finally {
      await Promise.all(pages.map((p) => p.page.close().catch(() => {})));
    }
  }

  test('alice transfers bob to carol; bob and carol talk', { timeout: 90_000 }, () =>
    run(async (pages) => {
      const alice = await open(pages, 'alice');
      const bob = await open(pages, 'bob', '?autoanswer=1');
      const carol = await open(pages, 'carol', '?autoanswer=1');

      assert.equal(await alice.evaluate(() => window.softphone.call('bob')), true);
      await waitFor('alice and bob in a call', () => state(alice), (s) => s.call === 'active' && s.peer === 'bob');
      await waitFor('bob in the call', () => state(bob), (s) => s.call === 'active' && s.peer === 'alice');
      await audioFlows('alice', alice);

      await transferFromPage(alice, 'carol');
      const ended = await waitFor('alice: the call transferred', () => state(alice), (s) => s.call === 'idle');
      assert.equal(ended.status, 'bob was transferred to carol.');
      assert.equal(ended.error, '');

      const b = await waitFor('bob in a call with carol', () => state(bob), (s) => s.call === 'active' && s.peer === 'carol');
      assert.equal(b.transferredFrom, 'alice');
      await waitFor('carol in a call with bob', () => state(carol), (s) => s.call === 'active' && s.peer === 'bob');
      await audioFlows('bob', bob);
      await audioFlows('carol', carol);

      await bob.evaluate(() => window.softphone.hangup());
      await waitFor('carol: the call ended', () => state(carol), (s) => s.call === 'idle');
    }),
  );

  test('call waiting: answering holds the first call; the user switches between them', { timeout: 90_000 }, () =>
    run(async (pages) => {
      const alice = await open(pages, 'alice');
      const bob = await open(pages, 'bob');
      const carol = await open(pages, 'carol');

      assert.equal(await bob.evaluate(() => window.softphone.call('alice')), true);
      await waitFor('alice rings', () => state(alice), (s) => s.call === 'incoming');
      await alice.evaluate(() => window.softphone.answer());
      await waitFor('alice and bob in a call', () => state(alice), (s) => s.call === 'active' && s.peer === 'bob');

      assert.equal(await carol.evaluate(() => window.softphone.call('alice')), true);
      const w = await waitFor('carol waits', () => state(alice), (s) => s.waiting === 'carol');
      assert.equal(w.status, 'carol is calling. Answer to put the current call on hold.');
      await alice.getByRole('button', { name: 'Answer carol and hold the current call' }).click();
      const a = await waitFor('alice with carol, bob on hold', () => state(alice), (s) => s.call === 'active' && s.peer === 'carol');
      assert.deepEqual(a.others.map((o) => o.peer), ['bob']);
      await waitFor('bob hears he is held', () => state(bob), (s) => s.remoteHeld);
      await audioFlows('alice with carol', alice);

      await alice.getByRole('button', { name: 'Resume the call with bob' }).click();
      const b = await waitFor('alice back with bob', () => state(alice), (s) => s.call === 'active' && s.peer === 'bob');
      assert.deepEqual(b.others.map((o) => o.peer), ['carol']);
      await waitFor('carol hears she is held', () => state(carol), (s) => s.remoteHeld);
      await waitFor('bob is not held', () => state(bob), (s) => !s.remoteHeld);
      await audioFlows('alice with bob', alice);

      await alice.evaluate(() => window.softphone.hangup());
      await waitFor('bob: the call ended', () => state(bob), (s) => s.call === 'idle');
      const left = await waitFor('alice: carol still on hold', () => state(alice), (s) => s.call === 'idle' && s.others.length === 1);
      await alice.evaluate((id) => window.softphone.switchTo(id), left.others[0].id);
      await waitFor('alice back with carol', () => state(alice), (s) => s.call === 'active' && s.peer === 'carol');
      await audioFlows('alice with carol again', alice);
      await alice.evaluate(() => window.softphone.hangup());
      await waitFor('carol: the call ended', () => state(carol), (s) => s.call === 'idle');
    }),
  );

  test('attended transfer: alice consults carol, then connects bob with carol', { timeout: 90_000 }, () =>
    run(async (pages) => {
      const alice = await open(pages, 'alice');
      const bob = await open(pages, 'bob', '?autoanswer=1');
      const carol = await open(pages, 'carol', '?autoanswer=1');

      assert.equal(await alice.evaluate(() => window.softphone.call('bob')), true);
      await waitFor('alice and bob in a call', () => state(alice), (s) => s.call === 'active' && s.peer === 'bob');
      await waitFor('bob in the call', () => state(bob), (s) => s.call === 'active');

      await alice.getByLabel('Transfer to').fill('carol');
      await alice.getByRole('button', { name: 'Call first' }).click();
      await waitFor('alice consults carol', () => state(alice), (s) => s.call === 'active' && s.peer === 'carol' && s.others.length === 1);
      await waitFor('carol in the call', () => state(carol), (s) => s.call === 'active' && s.peer === 'alice');
      await audioFlows('alice with carol', alice);

      await alice.getByRole('button', { name: 'Transfer bob to carol' }).click();
      const b = await waitFor('bob in a call with carol', () => state(bob), (s) => s.call === 'active' && s.peer === 'carol');
      assert.equal(b.transferredFrom, 'alice');
      const c = await waitFor('carol in a call with bob', () => state(carol), (s) => s.call === 'active' && s.peer === 'bob');
      assert.equal(c.others.length, 0);
      await waitFor('alice: both calls ended', () => state(alice), (s) => s.call === 'idle' && s.others.length === 0);
      await audioFlows('bob', bob);
      await audioFlows('carol', carol);
      await bob.evaluate(() => window.softphone.hangup());
      await waitFor('carol: the call ended', () => state(carol), (s) => s.call === 'idle');
    }),
  );

  test('a transfer to someone not there fails: the call goes on', { timeout: 90_000 }, () =>
    run(async (pages) => {
      const alice = await open(pages, 'alice');
      const bob = await open(pages, 'bob', '?autoanswer=1');

      assert.equal(await alice.evaluate(() => window.softphone.call('bob')), true);
      await waitFor('alice and bob in a call', () => state(alice), (s) => s.call === 'active' && s.peer === 'bob');
      await waitFor('bob in the call', () => state(bob), (s) => s.call === 'active');

      // carol has not signed in: her address has no one to ring.
      await transferFromPage(alice, 'carol');
      const a = await waitFor('alice: the transfer failed', () => state(alice), (s) => s.transfer === 'failed');
      assert.equal(a.call, 'active');
      assert.match(a.status, /^carol did not take the call \((no answer|error \d+)\)\. You are still in the call with bob\.$/);
      const b = await waitFor('bob: back in the call with alice', () => state(bob), (s) => s.call === 'active' && s.peer === 'alice');
      assert.match(b.status, /^The transfer to carol failed: .* You are back in the call with alice\.$/);
      await audioFlows('alice', alice);
      await audioFlows('bob', bob);
      assert.equal(await alice.getByRole('button', { name: 'Transfer' }).isEnabled(), true);

      await alice.evaluate(() => window.softphone.hangup());
      await waitFor('bob: the call ended', () => state(bob), (s) => s.call === 'idle');
    }),
  );
});
