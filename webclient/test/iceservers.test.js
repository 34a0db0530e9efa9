// The ICE servers of a call: HTTP Digest against /api/ice-servers.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { cleanServers, digestAuthorization, fetchICEServers, pickChallenge } from '../src/iceservers.js';

const md5 = (s) => createHash('md5').update(s).digest('hex');

test('digest response of RFC 7616 §3.9.1 (MD5)', () => {
  const challenge = { realm: 'http-auth@example.org', nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v', opaque: 'FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS' };
  const v = digestAuthorization(challenge, 'Mufasa', 'Circle of Life', 'GET', '/dir/index.html', md5, 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ');
  assert.match(v, /response="8ca523f5e9506fed4657c9700eebdbec"/);
  assert.match(v, /^Digest username="Mufasa", realm="http-auth@example.org", /);
  assert.match(v, /qop=auth, nc=00000001, /);
  assert.match(v, /opaque="FQhe\/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"$/);
});

test('the MD5 challenge among several', () => {
  const header =
    'Digest realm="localhost", nonce="abc", algorithm=SHA-256, qop="auth", Digest realm="localhost", nonce="def,g", algorithm=MD5, qop="auth", opaque="o"';
  assert.deepEqual(pickChallenge(header), { realm: 'localhost', nonce: 'def,g', algorithm: 'MD5', qop: 'auth', opaque: 'o' });
  assert.equal(pickChallenge('Digest realm="x", nonce="n", algorithm=SHA-256, qop="auth"'), null);
  assert.equal(pickChallenge('Digest realm="x", nonce="n"'), null, 'no qop: refused');
  assert.equal(pickChallenge('Basic realm="x"'), null);
  assert.equal(pickChallenge(null), null);
});

test('only well-formed servers are kept', () => {
  assert.deepEqual(
    cleanServers([
      { urls: ['turn:t.example:3478', 'javascript:alert(1)'], username: 'u', credential: 'c' },
      { urls: 'stun:s.example' },
      { urls: [] },
      { urls: 'turn:x', username: 5 },
      null,
      'turn:y',
    ]),
    [{ urls: ['turn:t.example:3478'], username: 'u', credential: 'c' }, { urls: ['stun:s.example'] }, { urls: ['turn:x'] }],
  );
  assert.deepEqual(cleanServers({}), []);
});

// fakeServer answers the first request 401 with a challenge and the
// second with the servers when its Authorization is right.
function fakeServer(servers) {
  const seen = [];
  const fetchFn = async (url, init) => {
    seen.push({ url: String(url), init });
    const auth = init.headers.Authorization;
    if (!auth) {
      return {
        ok: false,
        status: 401,
        headers: new Map([['www-authenticate', 'Digest realm="localhost", nonce="n1", algorithm=MD5, qop="auth"']]),
      };
    }
    const want = digestAuthorization({ realm: 'localhost', nonce: 'n1' }, 'alice', 'alice-secret', 'GET', '/api/ice-servers', md5, 'c1');
    if (auth !== want) return { ok: false, status: 401, headers: new Map() };
    return { ok: true, status: 200, json: async () => ({ iceServers: servers, ttl: 86400 }) };
  };
  fetchFn.seen = seen;
  return fetchFn;
}

const headersOf = (m) => ({ get: (k) => m.get(k.toLowerCase()) ?? null });

test('servers fetched with Digest credentials', async () => {
  const servers = [{ urls: ['turn:127.0.0.1:3478'], username: '1767312000:alice', credential: 'pw' }];
  const inner = fakeServer(servers);
  const fetchFn = async (url, init) => {
    const res = await inner(url, init);
    return { ...res, headers: headersOf(res.headers || new Map()) };
  };
  const got = await fetchICEServers(new URL('http://gw.test/api/ice-servers'), 'alice', 'alice-secret', { fetchFn, md5, cnonce: () => 'c1' });
  assert.deepEqual(got, servers);
  assert.equal(inner.seen.length, 2);
  assert.equal(inner.seen[0].init.credentials, 'omit', 'no cookies, no browser prompt');
  assert.ok(inner.seen[1].init.signal, 'the request has a timeout');
  // A wrong password gets nothing, and the call goes on without servers.
  assert.deepEqual(await fetchICEServers(new URL('http://gw.test/api/ice-servers'), 'alice', 'wrong', { fetchFn, md5, cnonce: () => 'c1' }), []);
});

test('failures give no servers', async () => {
  const url = new URL('http://gw.test/api/ice-servers');
  assert.deepEqual(await fetchICEServers(url, 'a', 'b', { fetchFn: async () => { throw new TypeError('offline'); }, md5 }), []);
  assert.deepEqual(await fetchICEServers(url, 'a', 'b', { fetchFn: async () => ({ ok: false, status: 500, headers: headersOf(new Map()) }), md5 }), []);
  assert.deepEqual(await fetchICEServers(url, 'a', 'b', { fetchFn: async () => ({ ok: true, status: 200, json: async () => { throw new SyntaxError('x'); } }), md5 }), []);
});
