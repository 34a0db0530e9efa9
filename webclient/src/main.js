// Wiring: loads the gateway's settings, makes the Phone, and connects it to
// the page, the sounds and the call history. Also the test hook
// window.softphone and ?autoanswer=1.

import JsSIP from 'jssip';
import { Sounds, LevelMeter } from './audio.js';
import { loadConfig, wsURL } from './config.js';
import { fetchICEServers } from './iceservers.js';
import { createHistory } from './history.js';
import { describeMediaError } from './messages.js';
import { Call, Phone, getMicrophone } from './phone.js';
import { createUI } from './ui.js';

const USER_KEY = 'switchboard.user';
const autoAnswer = new URLSearchParams(location.search).get('autoanswer') === '1';
const storage = openStorage();
const sounds = new Sounds();
const history = createHistory(storage);

let phone = null;
let meter = null;
let level = 0;
let micTestStream = null;
let lastCall = Call.IDLE;

const ui = createUI(document, {
  signIn: (user, password) => signIn(user, password),
  signOut: () => {
    stopMicTest();
    phone.signOut();
  },
  call: (target) => {
    stopMicTest();
    phone.call(target);
  },
  answer: () => {
    stopMicTest();
    phone.answer();
  },
  decline: () => phone.decline(),
  hangup: () => phone.hangup(),
  mute: () => phone.toggleMute(),
  hold: () => phone.toggleHold(),
  video: () => phone.toggleVideo(),
  transfer: (target) => phone.transfer(target),
  consult: (target) => phone.call(target),
  switchTo: (id) => phone.switchTo(id),
  transferHeld: (id) => phone.transferHeld(id),
  digit: (d) => {
    const call = phone.snapshot().call;
    if (call === Call.ACTIVE) {
      if (phone.sendDTMF(d)) {
        ui.appendTone(d);
        sounds.key(d);
      }
    } else if (call === Call.IDLE) {
      ui.appendDigit(d);
      sounds.key(d);
    }
  },
  micTest: () => toggleMicTest(),
  redial: (target) => {
    ui.setNumber(target);
    stopMicTest();
    phone.call(target);
  },
  clearHistory: () => {
    history.clear();
    ui.renderHistory([]);
  },
  gesture: () => sounds.unlock(),
});
ui.setUser(storage.getItem(USER_KEY));
ui.renderHistory(history.list());

const ready = loadConfig(location).then((cfg) => {
  const iceServers = cfg.iceServersPath
    ? (user, password) => fetchICEServers(new URL(cfg.iceServersPath, location.href), user, password, { md5: JsSIP.Utils.calculateMD5 })
    : null;
  phone = new Phone({ sip: JsSIP, wsUrl: wsURL(location, cfg.wsPath), domain: cfg.domain, iceServers });
  phone.on('change', onChange);
  phone.on('incoming', () => {
    if (autoAnswer) phone.answer();
  });
  phone.on('localstream', (stream) => {
    startMeter(stream);
    const video = stream ? stream.getVideoTracks().filter((t) => t.readyState === 'live') : [];
    ui.setLocalVideo(video.length ? new MediaStream(video) : null);
  });
  phone.on('remotetrack', ({ track, streams }) => {
    // The audio element plays the sound; the video element, muted, only
    // the picture.
    if (track.kind === 'video') ui.setRemoteVideo(new MediaStream([track]));
    else ui.setRemoteStream(streams[0] || new MediaStream([track]));
  });
  phone.on('callended', (entry) => ui.renderHistory(history.add(entry)));
  ui.render(phone.snapshot());
  ui.setReady();
  return phone;
});

addEventListener('pagehide', () => {
  if (phone) phone.signOut();
});
// Online again, likely on another network: the call's media restarts ICE
// (it waits for the WebSocket to be back if that is down too).
addEventListener('online', () => {
  if (phone) phone.networkChanged();
});

async function signIn(user, password) {
  sounds.unlock();
  const p = await ready;
  ui.setUser(user);
  if (user) storage.setItem(USER_KEY, user); // the user name only, never the password
  return p.register(user, password);
}

function onChange(s) {
  ui.render(s);
  if (s.call !== lastCall) {
    if (s.call === Call.INCOMING) sounds.startRing();
    else if (s.call === Call.RINGING && !s.earlyMedia) sounds.startRingback();
    else sounds.stop();
    if (s.call === Call.IDLE) {
      stopMeter();
      ui.setRemoteStream(null);
      ui.setRemoteVideo(null);
      ui.setLocalVideo(null);
    }
    lastCall = s.call;
  }
}

function startMeter(stream) {
  stopMeter();
  const ctx = sounds.context();
  if (!ctx) return;
  sounds.unlock();
  meter = new LevelMeter(ctx, stream, (v) => {
    level = v;
    ui.setLevel(v);
  });
}

function stopMeter() {
  if (meter) meter.stop();
  meter = null;
  level = 0;
  ui.setLevel(0);
}

// The microphone test shows the level meter outside a call.
async function toggleMicTest() {
  if (micTestStream) {
    stopMicTest();
    return;
  }
  if (!phone || phone.snapshot().call !== Call.IDLE) return; // the meter shows the call's microphone
  let stream;
  try {
    stream = await getMicrophone();
  } catch (err) {
    phone.reportError(describeMediaError(err));
    return;
  }
  micTestStream = stream;
  startMeter(stream);
  ui.setMicTesting(true);
}

function stopMicTest() {
  if (!micTestStream) return;
  stopMeter();
  for (const t of micTestStream.getTracks()) t.stop();
  micTestStream = null;
  ui.setMicTesting(false);
}

// openStorage is localStorage, or a stand-in that forgets when the browser
// refuses storage (private modes, disabled site data).
function openStorage() {
  try {
    const s = window.localStorage;
    const probe = '__switchboard__';
    s.setItem(probe, probe);
    s.removeItem(probe);
    return s;
  } catch {
    const m = new Map();
    return {
      getItem: (k) => (m.has(k) ? m.get(k) : null),
      setItem: (k, v) => m.set(k, String(v)),
      removeItem: (k) => m.delete(k),
    };
  }
}

// window.softphone lets tests (and the curious) drive and observe the phone
// without depending on the page's markup.
window.softphone = Object.freeze({
  get state() {
    return phone ? phone.snapshot() : null;
  },
  ready: ready.then(() => true),
  autoAnswer,
  register: (user, password) => signIn(user, password),
  signOut: () => phone && phone.signOut(),
  call: async (target) => {
    await ready;
    stopMicTest();
    return phone.call(target);
  },
  answer: () => phone && phone.answer(),
  decline: () => phone && phone.decline(),
  hangup: () => phone && phone.hangup(),
  mute: (on = true) => phone && phone.setMuted(on),
  hold: (on = true) => phone && phone.setHeld(on),
  transfer: (target) => phone && phone.transfer(target),
  switchTo: (id) => phone && phone.switchTo(id),
  transferHeld: (id) => phone && phone.transferHeld(id),
  dtmf: (tones) => phone && phone.sendDTMF(tones),
  restartIce: () => Boolean(phone && phone.restartIce()),
  // video(on): the video toggle; resolves with true when the call (or the
  // next one) is as asked.
  video: async (on = true) => {
    await ready;
    return phone.setVideo(on);
  },
  getStats: () => (phone ? phone.getStats() : Promise.resolve(null)),
  history: () => history.list(),
  micLevel: () => level,
  tone: () => sounds.playing, // 'ring', 'ringback' or null
});
