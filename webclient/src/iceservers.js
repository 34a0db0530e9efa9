// The STUN and TURN servers of the page's calls, from the gateway's
// /api/ice-servers. TURN credentials are worth a relay's bandwidth, so the
// gateway hands them only to its users: the page answers an HTTP Digest
// challenge (RFC 7616, MD5, qop=auth) with the signed-in user's SIP
// credentials, which the password never leaves. Without the endpoint, or
// when anything fails, the call goes on with no servers: the gateway's own
// candidates still work wherever UDP or TCP to it does.

export const ICE_SERVERS_TIMEOUT_MS = 3000;

// fetchICEServers resolves with the iceServers for an RTCConfiguration,
// [] when they cannot be had. md5 is a hex MD5 of a string (JsSIP's
// Utils.calculateMD5); cnonce makes the client nonce (tests).
export async function fetchICEServers(url, user, password, { fetchFn = globalThis.fetch, md5, cnonce = randomNonce, timeoutMs = ICE_SERVERS_TIMEOUT_MS } = {}) {
  try {
    const get = (headers) =>
      fetchFn(url, {
        cache: 'no-store',
        credentials: 'omit',
        headers: { Accept: 'application/json', ...headers },
        signal: AbortSignal.timeout(timeoutMs),
      });
    let res = await get({});
    if (res.status === 401) {
      const challenge = pickChallenge(res.headers.get('WWW-Authenticate'));
      if (!challenge || !md5) return [];
      const u = new URL(url, 'http://x');
      const uri = u.pathname + u.search;
      res = await get({ Authorization: digestAuthorization(challenge, user, password, 'GET', uri, md5, cnonce()) });
    }
    if (!res.ok) return [];
    return cleanServers((await res.json()).iceServers);
  } catch (err) {
    console.warn('softphone: no ICE servers', err);
    return [];
  }
}

// pickChallenge returns the parameters of the MD5 Digest challenge among
// those of a WWW-Authenticate value (fetch joins several with commas).
export function pickChallenge(header) {
  if (!header) return null;
  for (const part of String(header).split(/,?\s*(?=\bDigest\s)/i)) {
    const m = /^\s*Digest\s+(.*)$/is.exec(part);
    if (!m) continue;
    const params = {};
    for (const [, k, quoted, token] of m[1].matchAll(/([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))/g)) {
      params[k.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : token;
    }
    const alg = (params.algorithm || 'MD5').toUpperCase();
    const qops = (params.qop || '').split(',').map((q) => q.trim());
    if (alg === 'MD5' && params.realm !== undefined && params.nonce && qops.includes('auth')) return params;
  }
  return null;
}

// digestAuthorization is the Authorization value answering challenge.
export function digestAuthorization(challenge, user, password, method, uri, md5, cnonce) {
  const nc = '00000001';
  const ha1 = md5(`${user}:${challenge.realm}:${password}`);
  const ha2 = md5(`${method}:${uri}`);
  const response = md5(`${ha1}:${challenge.nonce}:${nc}:${cnonce}:auth:${ha2}`);
  const q = (s) => `"${String(s).replace(/["\\]/g, '\\$&')}"`;
  let v = `Digest username=${q(user)}, realm=${q(challenge.realm)}, nonce=${q(challenge.nonce)}, uri=${q(uri)}, algorithm=MD5, qop=auth, nc=${nc}, cnonce=${q(cnonce)}, response=${q(response)}`;
  if (challenge.opaque !== undefined) v += `, opaque=${q(challenge.opaque)}`;
  return v;
}

// cleanServers keeps what an RTCConfiguration accepts: urls (a string or
// strings), and string credentials.
export function cleanServers(list) {
  if (!Array.isArray(list)) return [];
  const out = [];
  for (const s of list) {
    if (!s || typeof s !== 'object') continue;
    const urls = (Array.isArray(s.urls) ? s.urls : [s.urls]).filter((u) => typeof u === 'string' && /^(stuns?|turns?):/.test(u));
    if (urls.length === 0) continue;
    const entry = { urls };
    if (typeof s.username === 'string') entry.username = s.username;
    if (typeof s.credential === 'string') entry.credential = s.credential;
    out.push(entry);
  }
  return out;
}

function randomNonce() {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
