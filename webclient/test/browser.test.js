// The built page in headless Chromium, served from dist/ on loopback with
// no gateway behind /ws. Needs `npm run build` first (make webclient).
// Screenshots go to test/screenshot.png (360 px wide) and
// test/screenshot-desktop.png.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mustRun } from './gateway.js';
import { distDir, launchBrowser, startStaticServer, watchPage } from './helpers.js';

const built = existsSync(path.join(distDir, 'index.html'));
const T = { timeout: 30_000 };
const screenshotDir = path.dirname(new URL(import.meta.url).pathname);

// Expected noise: the page fails to open /ws (nothing serves it here) and
// the static server has no /config.json unless the test adds one.
const expected = [/WebSocket connection to .* failed/, /Failed to load resource: .*404/];
const unexpected = (problems) => problems.filter((p) => !expected.some((re) => re.test(p)));

describe('softphone page', { skip: mustRun(built ? false : 'dist/ is not built: run npm run build') }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startStaticServer({
      routes: {
        '/config.json': (req, res) => {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ domain: 'sip.example.test', wsPath: '/ws' }));
        },
      },
    });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  async function open(query = '') {
    const page = await browser.newPage();
    const problems = watchPage(page);
    await page.goto(`${server.url}/${query}`);
    await page.waitForFunction(() => window.softphone && window.softphone.state !== null);
    return { page, problems };
  }

  async function signIn(page, user = 'alice', password = 'secret-pass') {
    await page.getByLabel('User', { exact: true }).fill(user);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  test('loads, with a labelled sign-in form', T, async () => {
    const { page, problems } = await open();
    assert.equal(await page.title(), 'Switchboard softphone');
    assert.equal(await page.getByRole('heading', { name: 'Sign in' }).isVisible(), true);
    assert.equal(await page.getByLabel('User', { exact: true }).isVisible(), true);
    assert.equal(await page.getByLabel('Password').getAttribute('type'), 'password');
    assert.equal(await page.getByRole('button', { name: 'Sign in' }).isEnabled(), true);
    assert.equal(await page.getByRole('status').count(), 1);
    assert.equal(await page.getByRole('alert').count(), 1);
    assert.deepEqual(unexpected(problems), []);
    await page.close();
  });

  test('sign-in without a gateway says so in words, and keeps only the user name', T, async () => {
    const { page, problems } = await open();
    await signIn(page);
    await page.getByRole('alert').filter({ hasText: 'Cannot connect to the gateway' }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#reg-text').textContent(), 'Offline, reconnecting');
    const state = await page.evaluate(() => window.softphone.state);
    assert.equal(state.registration, 'disconnected');
    assert.equal(state.aor, 'alice@sip.example.test', 'the domain comes from /config.json');
    const stored = await page.evaluate(() => ({ ...localStorage }));
    assert.equal(stored['switchboard.user'], 'alice');
    assert.ok(!JSON.stringify(stored).includes('secret-pass'), 'the password must not be stored');
    assert.equal(await page.getByLabel('Password').inputValue(), '', 'the password field is hidden away');

    // Calling now is refused in words, not silently.
    await page.getByLabel('Number or SIP address').fill('1000');
    await page.getByRole('button', { name: 'Call', exact: true }).click();
    await page.getByRole('alert').filter({ hasText: 'Not connected to the gateway yet' }).waitFor();

    // The user name is offered again after a reload; the password is not.
    await page.reload();
    await page.waitForFunction(() => window.softphone && window.softphone.state !== null);
    assert.equal(await page.getByLabel('User', { exact: true }).inputValue(), 'alice');
    assert.equal(await page.getByLabel('Password').inputValue(), '');
    assert.deepEqual(unexpected(problems), []);
    await page.close();
  });

  test('every control has an accessible name', T, async () => {
    const { page } = await open();
    await signIn(page);
    await page.getByRole('region', { name: 'Phone' }).waitFor();
    const visibleButtons = [
      '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '* star', '# hash',
      'Call', 'Delete last digit', 'Test microphone', 'Sign out',
    ];
    for (const name of visibleButtons) {
      const b = page.getByRole('button', { name, exact: true });
      assert.equal(await b.count(), 1, `button "${name}"`);
      assert.equal(await b.isVisible(), true, `button "${name}" is visible`);
    }
    // Call controls exist for when a call is up.
    for (const name of ['Answer', 'Decline', 'Mute', 'Hold', 'Hang up']) {
      assert.equal(await page.getByRole('button', { name, exact: true, includeHidden: true }).count(), 1, name);
    }
    assert.equal(await page.getByRole('group', { name: 'Dial pad' }).isVisible(), true);
    assert.equal(await page.getByRole('textbox', { name: 'Number or SIP address' }).isVisible(), true);
    assert.equal(await page.getByLabel('Microphone level').evaluate((e) => e.tagName), 'METER');
    assert.equal(await page.getByRole('heading', { name: 'Recent calls' }).isVisible(), true);
    // No button without a name, anywhere.
    const unnamed = await page.evaluate(() =>
      [...document.querySelectorAll('button, input')]
        .filter((e) => !(e.getAttribute('aria-label') || e.textContent.trim() || e.labels?.length))
        .map((e) => e.outerHTML));
    assert.deepEqual(unnamed, []);
    // Keyboard focus is visible: a focused key gets an outline.
    await page.getByRole('button', { name: '5', exact: true }).focus();
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Tab');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.equal(outline, 'solid');
    await page.close();
  });

  test('the dial pad types, by click and by keyboard', T, async () => {
    const { page } = await open();
    await signIn(page);
    const number = page.getByLabel('Number or SIP address');
    await number.waitFor();
    await number.fill('');
    for (const d of ['1', '2', '3']) await page.getByRole('button', { name: d, exact: true }).click();
    await page.getByRole('button', { name: '* star' }).click();
    // Keys typed while the focus is on the page, not in the field.
    await page.getByRole('button', { name: '3', exact: true }).focus();
    await page.keyboard.type('45#0');
    assert.equal(await number.inputValue(), '123*45#0');
    await page.keyboard.press('Backspace');
    await page.getByRole('button', { name: 'Delete last digit' }).click();
    assert.equal(await number.inputValue(), '123*45');
    // And in the field itself, typing is just typing.
    await number.focus();
    await page.keyboard.type('9');
    assert.equal(await number.inputValue(), '123*459');
    await page.close();
  });

  test('the microphone test moves the level meter', T, async () => {
    const { page } = await open();
    await signIn(page);
    const button = page.getByRole('button', { name: 'Test microphone' });
    await button.click();
    await page.waitForFunction(() => document.getElementById('mic-test').getAttribute('aria-pressed') === 'true');
    // Chromium's fake microphone beeps about once a second.
    await page.waitForFunction(() => document.getElementById('level').value > 0.2, null, { timeout: 8000 });
    await button.click();
    assert.equal(await button.getAttribute('aria-pressed'), 'false');
    assert.equal(await page.getByLabel('Microphone level').evaluate((e) => e.value), 0);
    await page.close();
  });

  test('no microphone permission is said in words', T, async () => {
    const page = await browser.newPage();
    await page.addInitScript(() => {
      navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    });
    await page.goto(`${server.url}/`);
    await signIn(page);
    await page.getByRole('button', { name: 'Test microphone' }).click();
    await page.getByRole('alert').filter({ hasText: 'No microphone permission' }).waitFor();
    await page.close();
  });

  test('the test hook drives the phone', T, async () => {
    const { page } = await open('?autoanswer=1');
    const result = await page.evaluate(async () => {
      const sp = window.softphone;
      const before = sp.state.registration;
      const outcome = await sp.register('bob', 'pw');
      return {
        before,
        outcome,
        autoAnswer: sp.autoAnswer,
        stats: await sp.getStats(),
        call: await sp.call('1000'),
        history: sp.history(),
      };
    });
    assert.equal(result.before, 'signed-out');
    assert.equal(result.outcome, 'disconnected');
    assert.equal(result.autoAnswer, true);
    assert.equal(result.stats, null);
    assert.equal(result.call, false);
    assert.deepEqual(result.history, []);
    // The page shows what the hook did.
    assert.equal(await page.getByRole('region', { name: 'Phone' }).isVisible(), true);
    await page.evaluate(() => window.softphone.signOut());
    assert.equal(await page.getByRole('heading', { name: 'Sign in' }).isVisible(), true);
    await page.close();
  });

  test('fits a 360 px screen and a desktop; screenshots', T, async () => {
    const { page } = await open();
    await signIn(page);
    await page.getByRole('alert').filter({ hasText: 'Cannot connect' }).waitFor({ timeout: 10_000 });
    await page.getByLabel('Number or SIP address').fill('+44 20 7946 0000');
    // A history entry, so the screenshot shows one.
    await page.evaluate(() => {
      localStorage.setItem('switchboard.history', JSON.stringify([
        { direction: 'out', peer: '1000', target: '1000', startedAt: Date.now() - 60_000, duration: 42, outcome: 'answered' },
        { direction: 'in', peer: 'Bob (bob)', target: 'bob', startedAt: Date.now() - 3_600_000, duration: 0, outcome: 'missed' },
      ]));
    });
    await page.reload();
    await signIn(page);
    await page.getByRole('alert').filter({ hasText: 'Cannot connect' }).waitFor({ timeout: 10_000 });
    await page.getByLabel('Number or SIP address').fill('+44 20 7946 0000');

    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 360px screen`);
    await page.screenshot({ path: path.join(screenshotDir, 'screenshot.png'), fullPage: true });

    await page.setViewportSize({ width: 1280, height: 800 });
    await page.screenshot({ path: path.join(screenshotDir, 'screenshot-desktop.png'), fullPage: true });

    await page.setViewportSize({ width: 360, height: 740 });
    await page.evaluate(() => window.softphone.signOut());
    await page.screenshot({ path: path.join(screenshotDir, 'screenshot-signin.png') });
    await page.close();
  });
});
