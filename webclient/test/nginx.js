// nginx as the gateway's reverse proxy in a test: TLS with a test CA's
// certificate, WebSocket upgrades passed on, X-Forwarded-For and
// X-Forwarded-Proto set, as README.md's snippet does. It runs in the
// foreground as one process (no master, no workers to switch users),
// with every file it writes under the test's directory.
//
//   const px = await startNginx({ dir, listen: '127.0.0.1:8443', upstream: '127.0.0.1:8080',
//                                 bind: '127.0.0.2', certFile, keyFile, caFile });
//   ... px.url ...
//   await px.stop();
//
// Needs nginx (Debian package nginx; scripts/deps.sh installs it).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';

// Debian installs it in /usr/sbin, which a user's PATH may lack.
export const NGINX = process.env.NGINX || (existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx');

// nginxUnavailable says why nginx cannot run here, or '' when it can.
export function nginxUnavailable() {
  const r = spawnSync(NGINX, ['-v'], { encoding: 'utf8' });
  if (r.error) return `nginx is not installed (${NGINX}; Debian package nginx; scripts/deps.sh installs it)`;
  return '';
}

// proxyLocation is the location block of README.md's snippet: what the
// gateway needs from a reverse proxy.
export function proxyLocation(upstream, bind = '') {
  return `    location / {
      proxy_pass http://${upstream};
      proxy_http_version 1.1;
${bind ? `      proxy_bind ${bind};\n` : ''}      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      # SIP over WebSocket lives as long as a registration.
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }`;
}

// startNginx runs nginx listening on listen (host:port) with TLS, passing
// everything to upstream (host:port) from the address bind, and resolves
// once it answers /healthz through to the gateway. Returns { url, log(),
// stop() }.
export async function startNginx({ dir, listen, upstream, bind, certFile, keyFile, caFile, timeoutMs = 10_000 }) {
  await mkdir(dir, { recursive: true });
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(path.join(dir, d), { recursive: true });
  const errorLog = path.join(dir, 'error.log');
  const conf = `daemon off;
master_process off;
pid ${path.join(dir, 'nginx.pid')};
error_log ${errorLog} info;
events { worker_connections 256; }
http {
  access_log ${path.join(dir, 'access.log')};
  client_body_temp_path ${path.join(dir, 'body')};
  proxy_temp_path ${path.join(dir, 'proxy')};
  fastcgi_temp_path ${path.join(dir, 'fastcgi')};
  uwsgi_temp_path ${path.join(dir, 'uwsgi')};
  scgi_temp_path ${path.join(dir, 'scgi')};
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen ${listen} ssl;
    ssl_certificate ${certFile};
    ssl_certificate_key ${keyFile};
${proxyLocation(upstream, bind)}
  }
}
`;
  const confFile = path.join(dir, 'nginx.conf');
  await writeFile(confFile, conf);
  const child = spawn(NGINX, ['-p', dir, '-c', confFile, '-e', errorLog], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (b) => (output += b));
  child.stderr.setEncoding('utf8').on('data', (b) => (output += b));
  let exit = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve((exit = { code, signal })));
    child.on('error', (err) => {
      output += `\n[spawn error: ${err.message}]`;
      if (child.pid === undefined) resolve((exit = { code: null, signal: null }));
    });
  });
  const log = async () => {
    let e = '';
    try {
      e = await readFile(errorLog, 'utf8');
    } catch {
      // not written yet
    }
    return `${output}${e}`;
  };
  const stop = async () => {
    if (!exit) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  const url = `https://${listen}`;
  const ca = await readFile(caFile);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exit) throw new Error(`nginx exited (${JSON.stringify(exit)}):\n${await log()}`);
    const status = await new Promise((resolve) => {
      const req = https.get(`${url}/healthz`, { ca, timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', () => resolve(0));
      req.on('timeout', () => req.destroy());
    });
    if (status === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not pass /healthz to the gateway within ${timeoutMs} ms (last status ${status}):\n${await log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url, log, stop };
}
