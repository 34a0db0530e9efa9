// The frame of a browser suite against the real gateway: one gateway and
// one Chromium for the suite (gatewaySuite), and per test a set of
// softphone pages that are closed afterwards, whose failure report holds
// each page's state, problems and SIP over WebSocket, the gateway's log of
// the test and any other logs the test adds (pageSession).

import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { buildGateway, startGateway } from './gateway.js';
import { failureReport, launchBrowser, softphoneState, watchPage } from './helpers.js';

// gatewaySuite, called in a describe, builds and starts the gateway
// (users, env as startGateway takes them) and a browser before the
// suite's tests, and stops them after, checking the gateway stops
// cleanly. It returns { gateway, browser, users }, filled in by then.
export function gatewaySuite({ users, env = {} }) {
  const ctx = { users, gateway: null, browser: null };
  let build;
  before(
    async () => {
      build = await buildGateway();
      ctx.gateway = await startGateway({ bin: build.bin, users, env });
      ctx.browser = await launchBrowser();
    },
    { timeout: 300_000 },
  );
  after(async () => {
    await ctx.browser?.close();
    const stopped = await ctx.gateway?.stop();
    await build?.cleanup();
    if (stopped) assert.ok(stopped.clean, `the gateway did not stop cleanly: ${JSON.stringify(stopped)}`);
  });
  return ctx;
}

// pageSession runs fn({ open, sip, addLog }) and closes its pages.
// open(user, { query, viewport }) loads the gateway's softphone in a
// browser context of its own and signs user in; sip(page) is that page's
// SIP over WebSocket so far, [{ dir: 'sent' | 'received', text }];
// addLog(heading, fn) adds fn() to the failure report. Every page must
// end without problems (uncaught errors, console errors, requests off
// loopback).
export async function pageSession(ctx, fn) {
  const { gateway, browser, users } = ctx;
  const mark = gateway.logMark();
  const pages = [];
  const logs = [];
  const frames = new WeakMap();
  const open = async (user, { query = '', viewport } = {}) => {
    const page = await browser.newPage(viewport ? { viewport } : {});
    const entry = { label: user, page, trace: [], problems: watchPage(page) };
    const msgs = [];
    frames.set(page, msgs);
    pages.push(entry);
    page.on('websocket', (ws) => {
      ws.on('framesent', (f) => {
        msgs.push({ dir: 'sent', text: String(f.payload) });
        entry.trace.push(`>>> sent\n${f.payload}`);
      });
      ws.on('framereceived', (f) => {
        msgs.push({ dir: 'received', text: String(f.payload) });
        entry.trace.push(`<<< received\n${f.payload}`);
      });
    });
    await page.goto(`${gateway.url}/${query}`);
    await page.waitForFunction(() => window.softphone && window.softphone.state !== null, null, { timeout: 10_000 });
    assert.equal(await page.evaluate(([u, p]) => window.softphone.register(u, p), [user, users[user]]), 'registered');
    return page;
  };
  try {
    await fn({ open, sip: (page) => frames.get(page) || [], addLog: (heading, get) => logs.push([heading, get]) });
    for (const p of pages) assert.deepEqual(p.problems, [], `${p.label}: page problems`);
  } catch (err) {
    throw await failureReport(err, {
      pages,
      state: softphoneState,
      gatewayLog: gateway.logSince(mark),
      logs: Object.fromEntries(logs.map(([h, get]) => [h, get()])),
    });
  } finally {
    await Promise.all(pages.map((p) => p.page.close().catch(() => {})));
  }
}

// phoneSession runs fn({ open, phone }) in a pageSession: open(query) is
// user's softphone, phone(options) a SIP phone started by start(options)
// (an object, or a promise of one, with command, log() and stop()), named
// label in the failure report with its log, stopped after fn, and waited
// for with ready(phone) when given.
export async function phoneSession(ctx, { user, label, start, ready }, fn) {
  const phones = [];
  try {
    await pageSession(ctx, ({ open, addLog }) =>
      fn({
        open: (query = '') => open(user, { query }),
        phone: async (opts) => {
          const p = await start(opts);
          phones.push(p);
          addLog(`${label} #${phones.length}: ${p.command}`, () => p.log());
          if (ready) await ready(p);
          return p;
        },
      }),
    );
  } finally {
    await Promise.all(phones.map((p) => p.stop()));
  }
}
