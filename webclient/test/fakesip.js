// A stand-in for the JsSIP module, just enough of it for Phone: the tests
// play the gateway's part by emitting the events JsSIP would.

class Emitter {
  #handlers = new Map();
  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, []);
    this.#handlers.get(type).push(fn);
    return this;
  }
  emit(type, data) {
    for (const fn of this.#handlers.get(type) || []) fn(data);
  }
}

export class FakeWebSocketInterface {
  constructor(url) {
    if (!/^wss?:\/\//.test(url)) throw new TypeError(`invalid WebSocket URL ${url}`);
    this.url = url;
  }
}

export class FakeSession extends Emitter {
  constructor({ direction, target = '', remote = null }) {
    super();
    this.direction = direction;
    this.target = target;
    this.remote_identity = remote;
    this.connection = null;
    this.ended = false;
    this.terminated = null; // options of terminate()
    this.answered = null; // options of answer()
    this.dtmf = [];
    this.local = { hold: false, mute: false };
    this.renegotiations = []; // { options, done } of renegotiate()
    this.reofferBusy = false; // renegotiate() refuses, as JsSIP does mid-offer
  }
  renegotiate(options, done) {
    if (this.reofferBusy) return false;
    this.renegotiations.push({ options, done });
    return true;
  }
  isEnded() {
    return this.ended;
  }
  isOnHold() {
    return { local: this.local.hold, remote: false };
  }
  isMuted() {
    return { audio: this.local.mute, video: false };
  }
  answer(options) {
    this.answered = options;
  }
  terminate(options = {}) {
    if (this.ended) throw new Error('InvalidStateError');
    this.terminated = options;
    this.ended = true;
    const incomingUnanswered = this.direction === 'in' && !this.answered;
    this.emit('failed', {
      originator: 'local',
      cause: incomingUnanswered ? 'Rejected' : 'Canceled',
      message: null,
    });
  }
  sendDTMF(tones) {
    if (!/^[0-9A-D#*,]+$/i.test(tones)) throw new TypeError(`Invalid tones: ${tones}`);
    this.dtmf.push(tones);
  }
  mute() {
    this.local.mute = true;
    this.emit('muted', { audio: true });
  }
  unmute() {
    this.local.mute = false;
    this.emit('unmuted', { audio: true });
  }
  hold() {
    this.local.hold = true;
    this.emit('hold', { originator: 'local' });
    return true;
  }
  unhold() {
    this.local.hold = false;
    this.emit('unhold', { originator: 'local' });
    return true;
  }
}

export class FakeUA extends Emitter {
  static last = null;

  constructor(config) {
    super();
    if (!/^sip:[^@\s]+@[^@\s]+$/.test(config.uri)) throw new Error(`ConfigurationError: uri ${config.uri}`);
    this.config = config;
    this.started = false;
    this.stopped = false;
    this.connected = false;
    this.calls = [];
    this.registerCalls = 0;
    FakeUA.last = this;
  }
  start() {
    this.started = true;
  }
  stop() {
    this.stopped = true;
  }
  register() {
    this.registerCalls += 1;
  }
  isConnected() {
    return this.connected;
  }
  call(target, options) {
    if (/\s/.test(target)) throw new TypeError(`Invalid target: ${target}`);
    const session = new FakeSession({ direction: 'out', target });
    this.calls.push({ target, options, session });
    this.emit('newRTCSession', { session, originator: 'local' });
    return session;
  }

  // The gateway's side.
  connect() {
    this.connected = true;
    this.emit('connecting', {});
    this.emit('connected', {});
  }
  disconnect() {
    this.connected = false;
    this.emit('disconnected', { error: true });
  }
  incoming({ user, host, name = '' }) {
    const session = new FakeSession({
      direction: 'in',
      remote: { uri: { user, host }, display_name: name },
    });
    this.emit('newRTCSession', { session, originator: 'remote' });
    return session;
  }
}

export const fakeSip = { UA: FakeUA, WebSocketInterface: FakeWebSocketInterface };

// fakeStream is a MediaStream stand-in whose tracks record stop().
export function fakeStream() {
  const track = { kind: 'audio', stopped: false, stop() { this.stopped = true; } };
  return { track, getTracks: () => [track] };
}

// fakeTimers collects setTimeout callbacks so tests can fire them.
export function fakeTimers() {
  let next = 1;
  const pending = new Map();
  return {
    pending,
    setTimeout(fn, ms) {
      const id = next++;
      pending.set(id, { fn, ms });
      return id;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    fireAll() {
      const due = [...pending.values()];
      pending.clear();
      for (const t of due) t.fn();
    },
  };
}

// FakePeerConnection is an RTCPeerConnection stand-in for ICE: the tests
// set its iceConnectionState with ice(state), which fires the event.
export class FakePeerConnection extends EventTarget {
  iceConnectionState = 'new';
  restarts = 0;
  restartIce() {
    this.restarts += 1;
  }
  ice(state) {
    this.iceConnectionState = state;
    this.dispatchEvent(new Event('iceconnectionstatechange'));
  }
}
