// The small pure modules: settings, call history, words.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig, wsURL } from '../src/config.js';
import { HISTORY_KEY, createHistory } from '../src/history.js';
import { describeEnd, describeMediaError, text, transferReason } from '../src/messages.js';
import { formatDuration } from '../src/ui.js';

const page = new URL('http://gw.example.test:8080/?autoanswer=1');

function fetchReturning(status, body) {
  return async (url, init) => {
    assert.equal(String(url), 'http://gw.example.test:8080/config.json');
    assert.ok(init.signal, 'the request has a timeout');
    return { ok: status === 200, status, json: async () => (typeof body === 'string' ? JSON.parse(body) : body) };
  };
}

test('config from /config.json', async () => {
  assert.deepEqual(await loadConfig(page, fetchReturning(200, { domain: 'sip.example.com', wsPath: '/sip' })), {
    domain: 'sip.example.com',
    wsPath: '/sip',
    iceServersPath: '',
  });
  assert.deepEqual(
    await loadConfig(page, fetchReturning(200, { domain: 'd', wsPath: '/ws', iceServersPath: '/api/ice-servers' })),
    { domain: 'd', wsPath: '/ws', iceServersPath: '/api/ice-servers' },
  );
  // The user's credentials answer its challenge: only a path of the page's
  // own host is taken.
  for (const evil of ['//evil.test/x', 'https://evil.test/x', '/\\evil.test/x', 42]) {
    assert.equal((await loadConfig(page, fetchReturning(200, { domain: 'd', iceServersPath: evil }))).iceServersPath, '');
  }
});

test('config falls back to the page host and /ws', async () => {
  const fallback = { domain: 'gw.example.test', wsPath: '/ws', iceServersPath: '' };
  assert.deepEqual(await loadConfig(page, fetchReturning(404, '')), fallback);
  assert.deepEqual(await loadConfig(page, fetchReturning(200, '{not json')), fallback);
  assert.deepEqual(await loadConfig(page, async () => { throw new TypeError('offline'); }), fallback);
  assert.deepEqual(await loadConfig(page, fetchReturning(200, { domain: ' ', wsPath: '//evil.test/ws' })), fallback);
  assert.deepEqual(await loadConfig(page, fetchReturning(200, [])), fallback);
});

test('WebSocket URL on the page host', () => {
  assert.equal(wsURL(page, '/ws'), 'ws://gw.example.test:8080/ws');
  assert.equal(wsURL(new URL('https://phone.example.com/'), '/ws'), 'wss://phone.example.com/ws');
});

function memoryStorage() {
  const m = new Map();
  return { m, getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
}

test('history keeps the last 20 calls, newest first', () => {
  const storage = memoryStorage();
  const h = createHistory(storage);
  for (let i = 0; i < 25; i++) {
    h.add({ direction: 'out', peer: `p${i}`, target: `p${i}`, startedAt: i + 1, duration: 3.4, outcome: 'answered' });
  }
  const list = h.list();
  assert.equal(list.length, 20);
  assert.equal(list[0].peer, 'p24');
  assert.equal(list[19].peer, 'p5');
  assert.equal(list[0].duration, 3);
  h.add({ direction: 'sideways', peer: 'x', startedAt: 99, outcome: 'exploded' });
  assert.equal(h.list()[0].direction, 'out');
  assert.equal(h.list()[0].outcome, 'failed');
  h.clear();
  assert.deepEqual(h.list(), []);
});

test('history survives junk in storage', () => {
  const storage = memoryStorage();
  storage.setItem(HISTORY_KEY, '{broken');
  assert.deepEqual(createHistory(storage).list(), []);
  storage.setItem(HISTORY_KEY, JSON.stringify([null, 5, { peer: 'ok', startedAt: 1 }]));
  assert.equal(createHistory(storage).list().length, 1);
  const full = { getItem: () => null, setItem: () => { throw new Error('QuotaExceededError'); }, removeItem() {} };
  assert.doesNotThrow(() => createHistory(full).add({ peer: 'a', startedAt: 1 }));
});

test('microphone errors in words', () => {
  assert.match(describeMediaError({ name: 'NotAllowedError' }), /^No microphone permission/);
  assert.match(describeMediaError({ name: 'NotFoundError' }), /^No microphone found/);
  assert.match(describeMediaError({ name: 'NotReadableError' }), /Another app/);
  assert.match(describeMediaError({ name: 'InsecureContextError' }), /https:\/\//);
  assert.match(describeMediaError({ name: 'Weird' }), /\(Weird\)/);
});

test('answered calls end without alarm', () => {
  const call = { direction: 'out', peer: 'bob', answered: true };
  assert.deepEqual(describeEnd({ originator: 'remote', cause: 'Terminated' }, call), { outcome: 'answered', text: 'bob hung up.' });
  assert.equal(describeEnd({ originator: 'system', cause: 'RTP Timeout' }, call).error, true);
  assert.equal(describeEnd({ originator: 'local', cause: 'Canceled' }, { ...call, answered: false }).outcome, 'cancelled');
});

test('call timer format', () => {
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(65), '1:05');
  assert.equal(formatDuration(3725), '1:02:05');
});

test('transfer outcomes in words', () => {
  assert.equal(transferReason(486), 'busy');
  assert.equal(transferReason('480'), 'no answer');
  assert.equal(transferReason(403), 'not allowed');
  assert.equal(transferReason(603), 'declined');
  assert.equal(transferReason(503), 'error 503');
  assert.equal(text.transferred('bob', 'carol'), 'bob was transferred to carol.');
  assert.equal(
    text.transferFailed('bob', 'carol', 486),
    'carol did not take the call (busy). You are still in the call with bob.',
  );
  assert.equal(text.transferRefused('bob', 'carol'), 'bob could not be transferred to carol. You are still in the call.');
  assert.equal(text.beingTransferred('alice', 'carol'), 'alice is transferring you to carol. Calling carol…');
});
