// baresip (Debian packages baresip-core and baresip-ffmpeg) as a SIP video
// phone for the browser tests: it registers with the gateway over UDP on
// loopback, answers calls by itself or dials one, and sends video from its
// fakevideo source (a moving test pattern) with VP8 (module vp8) or H.264
// (module avcodec, libx264), and a sine tone as audio. Its log (-v) is
// kept for failure reports and for what the phone saw.
//
//   const phone = await startBaresip({ gateway, user: '1000', password, video: 'VP8' });
//   await phone.registered();
//   ... phone.log() ...
//   await phone.stop();

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { freeUdpPort } from './sipp.js';

const BARESIP = process.env.BARESIP_PATH || '/usr/bin/baresip';
const MODULES = '/usr/lib/baresip/modules';

// baresipMissing says why baresip cannot run here, or '' when it can.
export function baresipMissing() {
  if (!existsSync(BARESIP)) return `${BARESIP} is missing: install baresip-core and baresip-ffmpeg (scripts/deps.sh does)`;
  for (const m of ['fakevideo.so', 'vp8.so', 'avcodec.so', 'g711.so', 'ausine.so', 'aufile.so', 'menu.so', 'account.so']) {
    if (!existsSync(path.join(MODULES, m))) return `baresip module ${m} is missing: install baresip-core and baresip-ffmpeg`;
  }
  const v = spawnSync(BARESIP, ['-h'], { encoding: 'utf8' });
  if (v.error) return `${BARESIP} does not run: ${v.error.message}`;
  return '';
}

// freeSipPort returns a loopback port for baresip's sip_listen: baresip
// binds it for UDP and for TCP, and port + 1 for TLS (TCP), so all three
// must be free. A UDP check alone let it pick a port whose TCP twin an
// outgoing connection held (the ports the system picks for both come
// from the same ephemeral range), and baresip exited with "Address
// already in use" before it registered.
async function freeSipPort() {
  for (let i = 0; i < 50; i++) {
    const port = await freeUdpPort();
    if (port + 1 > 65535) continue;
    if ((await tcpBindable(port)) && (await tcpBindable(port + 1))) return port;
  }
  throw new Error('no loopback port free for UDP, TCP and TCP + 1');
}

// tcpBindable reports whether a TCP listener could bind 127.0.0.1:port now.
function tcpBindable(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

// startBaresip starts baresip as user@domain of the gateway (its SIP UDP
// address, gateway.sipUdp), on a free loopback port. video is the one
// video codec it sends ('VP8' or 'H264'); dial, when given,
// is a SIP URI it calls at start; otherwise it answers the first call
// (answermode=auto).
export async function startBaresip({ gateway, user, password, video = 'VP8', dial = '' }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-baresip-'));
  const port = await freeSipPort();
  const [gwHost, gwPort] = gateway.sipUdp.split(':');
  const config = [
    'poll_method epoll',
    `sip_listen 127.0.0.1:${port}`,
    // Nothing to resolve (every URI is an address); a lookup would go to
    // a loopback port where nothing answers, never off the machine.
    'dns_server 127.0.0.1:9',
    'net_interface 127.0.0.1',
    `module_path ${MODULES}`,
    'module g711.so',
    'module ausine.so',
    'module aufile.so',
    'module fakevideo.so',
    // VP8 alone (vp8); or avcodec's formats: H.264 in packetization modes
    // 0 and 1, H.263, MPEG-4, H.265, of which the gateway relays H.264
    // mode 1 (an account's video_codecs=H264 would keep mode 0 only).
    video === 'VP8' ? 'module vp8.so' : 'module avcodec.so',
    'module_app account.so',
    'module_app menu.so',
    `audio_player aufile,${path.join(dir, 'heard.wav')}`,
    'audio_source ausine,440',
    // ausine makes 48 kHz stereo only; baresip resamples to G.711's 8 kHz mono.
    'ausrc_srate 48000',
    'ausrc_channels 2',
    `audio_alert aufile,${path.join(dir, 'alert.wav')}`,
    'video_source fakevideo,nil',
    'video_display fakevideo,nil',
    'video_size 352x288',
    'video_bitrate 300000',
    'video_fps 15',
    'rtp_stats yes',
    '',
  ].join('\n');
  // The gateway's domain is its address here: baresip registers and calls
  // without DNS.
  const account =
    `<sip:${user}@${gwHost}:${gwPort};transport=udp>;auth_pass=${password};regint=600;` +
    `answermode=auto;audio_codecs=PCMU,PCMA${video === 'VP8' ? ';video_codecs=VP8' : ''}\n`;
  await writeFile(path.join(dir, 'config'), config);
  await writeFile(path.join(dir, 'accounts'), account);
  await writeFile(path.join(dir, 'contacts'), '');
  const args = ['-f', dir, '-v'];
  if (dial) args.push('-e', `/dial ${dial}`);
  const child = spawn(BARESIP, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const add = (b) => {
    log += b;
    if (log.length > 2 << 20) log = log.slice(-(1 << 20));
  };
  child.stdout.setEncoding('utf8').on('data', add);
  child.stderr.setEncoding('utf8').on('data', add);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let exit = null;
  exited.then((e) => {
    exit = e;
  });
  const until = async (what, re, timeout) => {
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      const m = re.exec(log);
      if (m) return m;
      if (exit) throw new Error(`baresip exited (${JSON.stringify(exit)}) before ${what}\n--- baresip ---\n${log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`baresip: no ${what} within ${timeout} ms\n--- baresip ---\n${log}`);
  };
  return {
    port,
    command: `${BARESIP} ${args.join(' ')}`,
    log: () => log,
    registered: () => until('registration (200 OK)', /\{0\/UDP\/v4\} 200 OK/, 10_000),
    until,
    async stop() {
      if (!exit) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
