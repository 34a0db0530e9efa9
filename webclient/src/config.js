// Where the gateway is: the page asks /config.json ({ "domain": "...",
// "wsPath": "/ws", "iceServersPath": "/api/ice-servers" }) and falls back
// to the page's own host name, /ws and no ICE servers.

export const DEFAULT_WS_PATH = '/ws';
export const CONFIG_TIMEOUT_MS = 3000;

export async function loadConfig(location, fetchFn = globalThis.fetch, timeoutMs = CONFIG_TIMEOUT_MS) {
  const fallback = { domain: location.hostname, wsPath: DEFAULT_WS_PATH, iceServersPath: '' };
  let body;
  try {
    const res = await fetchFn(new URL('/config.json', location.href), {
      cache: 'no-store',
      headers: { Accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) return fallback;
    body = await res.json();
  } catch {
    return fallback;
  }
  if (!body || typeof body !== 'object') return fallback;
  const domain = typeof body.domain === 'string' ? body.domain.trim() : '';
  const wsPath = typeof body.wsPath === 'string' ? body.wsPath.trim() : '';
  const icePath = typeof body.iceServersPath === 'string' ? body.iceServersPath.trim() : '';
  return {
    domain: domain || fallback.domain,
    wsPath: samePagePath(wsPath) ? wsPath : DEFAULT_WS_PATH,
    // Only a path on the page's own host: the user's credentials answer
    // its challenge.
    iceServersPath: samePagePath(icePath) ? icePath : '',
  };
}

function samePagePath(p) {
  return p.startsWith('/') && !p.startsWith('//') && !p.includes('\\');
}

// wsURL is the WebSocket URL of path on the page's own host: wss:// when
// the page came over https://.
export function wsURL(location, path) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
}
