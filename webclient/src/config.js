// Where the gateway is: the page asks /config.json ({ "domain": "...",
// "wsPath": "/ws" }) and falls back to the page's own host name and /ws.

export const DEFAULT_WS_PATH = '/ws';
export const CONFIG_TIMEOUT_MS = 3000;

export async function loadConfig(location, fetchFn = globalThis.fetch, timeoutMs = CONFIG_TIMEOUT_MS) {
  const fallback = { domain: location.hostname, wsPath: DEFAULT_WS_PATH };
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
  return {
    domain: domain || fallback.domain,
    wsPath: wsPath.startsWith('/') && !wsPath.startsWith('//') ? wsPath : DEFAULT_WS_PATH,
  };
}

// wsURL is the WebSocket URL of path on the page's own host: wss:// when
// the page came over https://.
export function wsURL(location, path) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
}
