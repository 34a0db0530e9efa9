// A pion-based SIP video phone for the browser tests: test/cmd/videophone
// (Go, built here with `go build`) registers with the gateway over UDP on
// loopback, answers the first call or places one, and sends synthesised
// VP8 or H.264 over plain RTP/AVP. It reports what it saw as JSON lines
// on stdout (registered, call, video_first_packet, keyframe, pli, fir,
// info_picture_fast_update, keyframe_sent, ...), which tests wait on, and
// takes commands on stdin ('gap': lose the next few video frames).
//
//   const build = await buildPionPhone();
//   const phone = startPionPhone({ bin: build.bin, gateway, user: '1000', password, video: 'vp8' });
//   await phone.next('registered');
//   ...
//   await phone.stop(); await build.cleanup();

import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './gateway.js';

const GO = process.env.GO || 'go';

// pionPhoneMissing says why the phone cannot be built here, or ''.
export function pionPhoneMissing() {
  const go = spawnSync(GO, ['version'], { encoding: 'utf8' });
  if (go.error || go.status !== 0) return `no Go toolchain (${GO}) to build test/cmd/videophone; put go on PATH`;
  return '';
}

// buildPionPhone builds test/cmd/videophone into a temporary directory.
export async function buildPionPhone() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'switchboard-videophone-'));
  const bin = path.join(dir, 'videophone');
  try {
    await promisify(execFile)(GO, ['build', '-o', bin, './test/cmd/videophone'], { cwd: repoRoot, timeout: 240_000 });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${GO} build ./test/cmd/videophone failed: ${err.message}\n${err.stderr || ''}`);
  }
  return { bin, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

// startPionPhone starts the phone as user at the gateway (its SIP UDP
// address, gateway.sipUdp). video is 'vp8' or 'h264'; rtcpFb offers
// a=rtcp-fb nack pli and ccm fir; noVideo offers audio alone; dial calls
// that user once registered (else the phone answers the first call).
//
// Returns { command, events, log(), next(event, pred, timeout),
// count(event), send(command), stop() }: next resolves with the first
// event named event (and matching pred) after the events seen so far
// when `from` is given as next's fourth argument, or at all otherwise.
export function startPionPhone({ bin, gateway, user, password, video = 'vp8', rtcpFb = false, noVideo = false, dial = '' }) {
  const args = ['-gateway', gateway.sipUdp, '-user', user, '-password', password, '-video', video];
  if (rtcpFb) args.push('-rtcp-fb');
  if (noVideo) args.push('-no-video');
  if (dial) args.push('-dial', dial);
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const events = [];
  const waiters = new Set();
  let log = '';
  let exit = null;
  let partial = '';
  const check = () => {
    for (const w of waiters) w();
  };
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    log += chunk;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop();
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        events.push(JSON.parse(line));
      } catch {
        events.push({ event: 'unparsed', line });
      }
    }
    check();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk) => {
    log += chunk;
  });
  const exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      check();
      resolve(exit);
    }),
  );
  // next waits for an event without sleeping: each line the phone writes
  // re-checks the waiters.
  const next = (event, pred = () => true, timeout = 15_000, from = 0) =>
    new Promise((resolve, reject) => {
      const waiter = () => {
        const e = events.slice(from).find((x) => x.event === event && pred(x));
        if (e) {
          done();
          resolve(e);
        } else if (exit) {
          done();
          reject(new Error(`videophone exited (${JSON.stringify(exit)}) before ${event}\n--- videophone ---\n${log}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`videophone: no ${event} within ${timeout} ms\n--- videophone ---\n${log}`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(waiter);
      };
      waiters.add(waiter);
      waiter();
    });
  return {
    command: `${bin} ${args.join(' ')}`,
    events,
    log: () => log,
    next,
    count: (event) => events.filter((e) => e.event === event).length,
    send: (cmd) => child.stdin.write(`${cmd}\n`),
    async stop() {
      if (!exit) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
