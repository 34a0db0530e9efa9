// sipp for the browser end-to-end tests (crossing.test.js, sipjs.test.js,
// balancer.test.js): desk phones played by sipp (test/sipp/*.xml) over UDP
// on loopback, with a hard time limit each, a -trace_msg log for failure
// reports, free UDP ports for them, a PCMU pcap for them to play, and none
// left running when the test process ends.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from './gateway.js';

export const SIPP = process.env.SIPP || 'sipp';
export const SIPP_DIR = path.join(repoRoot, 'test', 'sipp');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// sippMissing says why sipp cannot be run here, or '' when it can.
export function sippMissing() {
  const sipp = spawnSync(SIPP, ['-v'], { encoding: 'utf8' });
  return sipp.error ? `no sipp (${SIPP}) on PATH: run scripts/deps.sh` : '';
}

// Running sipp processes, killed if this process exits without it.
const running = new Set();
process.on('exit', () => killSipps());

// killSipps kills every sipp still running.
export function killSipps() {
  for (const child of running) child.kill('SIGKILL');
}

// bindable reports whether UDP port on 127.0.0.1 is free now.
export function bindable(port) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

// freeUdpPort returns a port the system picks such that port + k is free
// for every k of offsets (sipp -rtp_echo takes -mp and -mp + 2). A port
// could be taken between this check and sipp's bind; on loopback in a test
// run that is unlikely and shows as a sipp start-up error.
export async function freeUdpPort(offsets = [0]) {
  for (let i = 0; i < 50; i++) {
    const s = dgram.createSocket('udp4');
    await new Promise((resolve) => s.bind(0, '127.0.0.1', resolve));
    const { port } = s.address();
    await new Promise((resolve) => s.close(resolve));
    if (port + Math.max(...offsets) > 65535) continue;
    let ok = true;
    for (const k of offsets) ok = ok && (await bindable(port + k));
    if (ok) return port;
  }
  throw new Error('no free UDP port');
}

// startSipp runs sipp in dir (its -message_file goes there) with a hard
// time limit. Returns { label, command, done: Promise<{ code, signal }>,
// exited, output(), trace(), kill() }.
export function startSipp(label, args, { dir, timeoutMs = 45_000 }) {
  const messageFile = path.join(dir, `${label}-messages.log`);
  const full = [...args, '-trace_msg', '-message_file', messageFile, '-nostdin'];
  const child = spawn(SIPP, full, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let output = '';
  const add = (b) => {
    output += b;
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout.setEncoding('utf8').on('data', add);
  child.stderr.setEncoding('utf8').on('data', add);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  let exit = null;
  const done = new Promise((resolve) => {
    child.on('error', (err) => {
      add(`\n[spawn error: ${err.message}]`);
      if (child.pid === undefined) {
        clearTimeout(timer);
        running.delete(child);
        exit = { code: null, signal: null };
        resolve(exit);
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      exit = { code, signal };
      resolve(exit);
    });
  });
  return {
    label,
    command: `${SIPP} ${full.join(' ')}`,
    done,
    get exited() {
      return exit;
    },
    output: () => output,
    trace: async () => {
      try {
        return await readFile(messageFile, 'utf8');
      } catch {
        return '(no message file)';
      }
    },
    kill() {
      if (!exit) child.kill('SIGKILL');
      return done;
    },
  };
}

// linearToUlaw encodes one 16-bit sample as G.711 µ-law.
function linearToUlaw(sample) {
  const BIAS = 0x84;
  const CLIP = 32635;
  let sign = 0;
  let s = sample;
  if (s < 0) {
    s = -s;
    sign = 0x80;
  }
  if (s > CLIP) s = CLIP;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

// pcmuPcap returns a pcap (Ethernet, IPv4, UDP) of seconds of a 440 Hz
// tone as RTP PCMU (payload type 0), 20 ms a packet: what sipp's
// play_pcap_audio sends (its own addresses and ports replace these).
// Debian's sip-tester ships only an A-law pcap (g711a.pcap).
export function pcmuPcap(seconds = 6) {
  const packets = seconds * 50;
  const rtpLen = 12 + 160;
  const udpLen = 8 + rtpLen;
  const ipLen = 20 + udpLen;
  const frameLen = 14 + ipLen;
  const buf = Buffer.alloc(24 + packets * (16 + frameLen));
  let o = 0;
  o = buf.writeUInt32LE(0xa1b2c3d4, o);
  o = buf.writeUInt16LE(2, o);
  o = buf.writeUInt16LE(4, o);
  o = buf.writeInt32LE(0, o);
  o = buf.writeUInt32LE(0, o);
  o = buf.writeUInt32LE(65535, o);
  o = buf.writeUInt32LE(1, o); // DLT_EN10MB
  const t0 = 1_700_000_000;
  for (let i = 0; i < packets; i++) {
    const usec = i * 20_000;
    o = buf.writeUInt32LE(t0 + Math.floor(usec / 1e6), o);
    o = buf.writeUInt32LE(usec % 1e6, o);
    o = buf.writeUInt32LE(frameLen, o);
    o = buf.writeUInt32LE(frameLen, o);
    // Ethernet
    Buffer.from([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00]).copy(buf, o);
    o += 14;
    // IPv4
    const ip = o;
    buf[o++] = 0x45;
    buf[o++] = 0;
    o = buf.writeUInt16BE(ipLen, o);
    o = buf.writeUInt16BE(i & 0xffff, o);
    o = buf.writeUInt16BE(0x4000, o);
    buf[o++] = 64;
    buf[o++] = 17;
    o = buf.writeUInt16BE(0, o);
    Buffer.from([127, 0, 0, 1, 127, 0, 0, 1]).copy(buf, o);
    o += 8;
    let sum = 0;
    for (let k = 0; k < 20; k += 2) sum += buf.readUInt16BE(ip + k);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
    buf.writeUInt16BE(~sum & 0xffff, ip + 10);
    // UDP (checksum 0: none)
    o = buf.writeUInt16BE(40000, o);
    o = buf.writeUInt16BE(40002, o);
    o = buf.writeUInt16BE(udpLen, o);
    o = buf.writeUInt16BE(0, o);
    // RTP
    buf[o++] = 0x80;
    buf[o++] = i === 0 ? 0x80 : 0x00; // marker on the first, PT 0
    o = buf.writeUInt16BE(i & 0xffff, o);
    o = buf.writeUInt32BE((i * 160) >>> 0, o);
    o = buf.writeUInt32BE(0x5eed1000, o);
    for (let n = 0; n < 160; n++) {
      const sample = Math.round(8000 * Math.sin((2 * Math.PI * 440 * (i * 160 + n)) / 8000));
      buf[o++] = linearToUlaw(sample);
    }
  }
  return buf;
}

// expectExit waits for a sipp to end with 0.
export async function expectExit(proc, timeout, what) {
  const res = await Promise.race([proc.done, sleep(timeout).then(() => null)]);
  assert.ok(res, `sipp ${proc.label} still running after ${timeout} ms (${what})`);
  assert.equal(res.code, 0, `sipp ${proc.label} exit ${JSON.stringify(res)} (${what})`);
}

// waitBound waits until something (sipp) has bound UDP port.
export async function waitBound(port, proc, timeout = 5_000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (proc.exited) throw new Error(`sipp ${proc.label} exited early: ${JSON.stringify(proc.exited)}`);
    if (!(await bindable(port))) return;
    await sleep(50);
  }
  throw new Error(`sipp ${proc.label} did not bind 127.0.0.1:${port} within ${timeout} ms`);
}

// pcapCallerArgs are the arguments of sipp as 1000 calling callee@domain
// (uac-pcap.xml: digest on 407 with password, then PCMU from pcmu.pcap in
// sipp's directory for 6 s, then BYE) from free loopback ports; the
// gateway's address goes after them.
export async function pcapCallerArgs({ callee, domain, password }) {
  const port = await freeUdpPort();
  const mediaPort = await freeUdpPort([0, 2]);
  return [
    '-sf', path.join(SIPP_DIR, 'uac-pcap.xml'),
    '-inf', path.join(SIPP_DIR, 'caller-1000.csv'),
    '-au', '1000', '-ap', password, '-auth_uri', `${callee}@${domain}`, '-s', callee,
    '-i', '127.0.0.1', '-p', String(port),
    '-mi', '127.0.0.1', '-mp', String(mediaPort),
    '-m', '1', '-timeout', '40s', '-timeout_error',
  ];
}

// registerPhone registers 1000 (digest, with password) from a port of its
// own with register-only.xml, run by sipp (a launcher that adds the
// gateway's address: sipp(label, args, opts)), and returns that port,
// where the phone's UAS is then to run.
export async function registerPhone(sipp, password) {
  const port = await freeUdpPort();
  const reg = sipp('register-1000', [
    '-sf', path.join(SIPP_DIR, 'register-only.xml'),
    '-inf', path.join(SIPP_DIR, 'domain.csv'),
    '-au', '1000', '-ap', password, '-s', '1000',
    '-i', '127.0.0.1', '-p', String(port),
    '-m', '1', '-timeout', '10s', '-timeout_error',
  ], { timeoutMs: 15_000 });
  await expectExit(reg, 15_000, 'REGISTER 1000 with digest');
  return port;
}

// echoPhone registers 1000 and runs scenario (a file of test/sipp) as its
// UAS, with RTP echo on a media port of its own; args go before the rest
// (-inf, -s). Returns the UAS, once it listens.
export async function echoPhone(sipp, { password, scenario, label = 'uas-1000', args = [] }) {
  const port = await registerPhone(sipp, password);
  const mediaPort = await freeUdpPort([0, 2]);
  const uas = sipp(label, [
    '-sf', path.join(SIPP_DIR, scenario), ...args,
    '-i', '127.0.0.1', '-p', String(port),
    '-mi', '127.0.0.1', '-mp', String(mediaPort), '-rtp_echo',
    '-m', '1', '-timeout', '50s', '-timeout_error',
  ], { timeoutMs: 55_000 });
  await waitBound(port, uas);
  return uas;
}

// transferringPhone is an echoPhone of uas-transfer.xml, which on its
// caller's INFO REFERs the caller to target@domain; its fields file goes
// to dir.
export async function transferringPhone(sipp, { password, domain, target, dir }) {
  const fields = path.join(dir, 'transfer.csv');
  await writeFile(fields, `SEQUENTIAL\n${domain};${target}\n`);
  return echoPhone(sipp, {
    password,
    scenario: 'uas-transfer.xml',
    label: 'uas-transfer-1000',
    args: ['-inf', fields, '-s', '1000'],
  });
}
