// Phone wraps a JsSIP user agent: sign-in (REGISTER), a current call and
// calls on hold (call waiting), mute, hold, DTMF, blind and attended
// transfer (either side), video on or off before and during a call. It knows nothing of the DOM: it keeps a small state
// object and tells listeners when it changes, so the page (ui.js), the test
// hook (window.softphone) and Node tests can all observe it.

import { Cause, describeCameraError, describeEnd, describeMediaError, text } from './messages.js';

export const Reg = Object.freeze({
  SIGNED_OUT: 'signed-out',
  CONNECTING: 'connecting', // opening the WebSocket, never connected yet
  REGISTERING: 'registering', // connected, REGISTER sent
  REGISTERED: 'registered',
  DISCONNECTED: 'disconnected', // WebSocket down; JsSIP reconnects by itself
});

export const Call = Object.freeze({
  IDLE: 'idle',
  CALLING: 'calling', // outgoing, no ringing yet
  RINGING: 'ringing', // outgoing, the other side rings (180/183)
  INCOMING: 'incoming', // we ring
  ANSWERING: 'answering', // we answered, waiting for microphone and media
  ACTIVE: 'active',
});

// The gateway puts all of its ICE candidates in its SDP and needs none
// trickled; host candidates are gathered in milliseconds, and a TURN
// server's relay candidate in a round trip or two. Once the first
// candidate is known, the offer or answer is sent when gathering completes
// or after this long, whichever is first.
export const ICE_GATHERING_TIMEOUT_MS = 1000;
const MEDIA_CONSTRAINTS = Object.freeze({ audio: true, video: false });
// A phone-sized picture: 640×480 at most, and 24 frames a second are
// plenty for a face; the browser scales down when the link is poor.
const VIDEO_CONSTRAINTS = Object.freeze({ width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24, max: 30 } });
const REGISTER_RETRY_MS = 30_000;

// A call's ICE connection that stays 'disconnected' this long (a network
// change: the old path is gone for good) is restarted without waiting for
// 'failed', which Chromium reports only after some 30 s more. A restart
// that cannot go out yet (another re-offer in progress) is tried again
// after ICE_RESTART_RETRY_MS.
export const ICE_DISCONNECTED_RESTART_MS = 3000;
export const ICE_RESTART_RETRY_MS = 1000;

const initialState = Object.freeze({
  registration: Reg.SIGNED_OUT,
  user: '',
  aor: '',
  call: Call.IDLE,
  direction: '', // 'in' or 'out' while there is a call
  peer: '', // who the call is with, for people
  target: '', // what to dial to call them back
  answeredAt: 0, // ms since the epoch, 0 until answered
  muted: false,
  held: false, // we put the call on hold
  remoteHeld: false, // they did
  earlyMedia: false, // the ringing call sends its own audio (183 with SDP)
  tonesReceived: '', // DTMF the other side sent (SIP INFO)
  iceRestarts: 0, // ICE restarts of this call that the other side answered
  // videoWanted is the video toggle: calls start (and are answered) with
  // the camera when it is on; during a call it follows video. video says
  // that this call sends our camera, remoteVideo that the other side's
  // video arrives (its track is live and unmuted); videoChanging that a
  // re-INVITE adding or removing our video is in progress.
  videoWanted: false,
  video: false,
  remoteVideo: false,
  videoChanging: false,
  videoNotice: '', // the last video change, in words (the page's video live region)
  // transfer is where a blind transfer of ours stands: '' (none),
  // 'trying' (REFER sent or accepted), 'failed' (the call goes on); and
  // transferredFrom is who transferred us into this call, '' if nobody.
  transfer: '',
  transferredFrom: '',
  // waiting is who calls while we are in a call (call waiting), '' when
  // nobody; others are the calls on hold in the background, [{ id, peer }]:
  // answering a waiting call or dialling holds the current one, and
  // switchTo(id) takes a held one back.
  waiting: '',
  others: [],
  status: text.signedOut, // what is going on, in words
  error: '', // what went wrong, in words; '' when nothing
});

// getMicrophone opens the microphone, with words for the error when the
// page is not allowed to.
export function getMicrophone(constraints = MEDIA_CONSTRAINTS) {
  const md = globalThis.navigator && globalThis.navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    // Browsers hide mediaDevices on insecure (plain http, not localhost) pages.
    const err = new Error('navigator.mediaDevices is not available');
    err.name = globalThis.isSecureContext === false ? 'InsecureContextError' : 'NotSupportedError';
    return Promise.reject(err);
  }
  return md.getUserMedia(constraints);
}

// cleanTarget removes the spaces, dots, dashes and brackets people write in
// phone numbers; anything else (a user name, a SIP URI) is kept as typed.
export function cleanTarget(target) {
  const t = String(target ?? '').trim();
  if (/^\+?[\d\s().\-]+$/.test(t) || /^[\d*#]+$/.test(t)) {
    return t.replace(/[\s().\-]/g, '');
  }
  return t;
}

export class Phone {
  #sip;
  #wsUrl;
  #domain;
  #getUserMedia;
  #iceTimeoutMs;
  #iceServers;
  #credentials = null; // { user, password } of the signed-in user, for iceServers
  #timers;
  #now;

  #listeners = new Map();
  #state = { ...initialState };
  #ua = null;
  #everConnected = false;
  #retryTimer = null;

  #session = null;
  #call = null; // { direction, peer, target, startedAt, answeredAt, override }
  // #previous is the call we were in when the other side transferred us
  // (it REFERred us elsewhere): { session, call, stream }, until the new
  // call is answered or fails, when we are back in it.
  #previous = null;
  #others = []; // the held calls in the background: { session, call, stream }
  #waiting = null; // a call ringing while we are in one: { session, call }
  #replacing = null; // the call an INVITE with Replaces is about to replace
  #nextId = 1;
  #watched = new WeakSet(); // sessions #background follows
  #localStream = null;
  #iceTimers = new Set();
  #watchedPcs = new WeakSet();
  // An ICE restart waiting for the connection to the gateway (the re-offer
  // must reach it) or for the current re-offer to end: its reason.
  #restartPending = '';
  #restartTimer = null; // ICE_DISCONNECTED_RESTART_MS or ICE_RESTART_RETRY_MS

  // options: sip (the JsSIP module), wsUrl, domain; iceServers, a
  // function (user, password) that resolves with the STUN and TURN
  // servers of a call (none when absent); for tests: getUserMedia,
  // iceTimeoutMs, timers ({ setTimeout, clearTimeout }), now.
  constructor({ sip, wsUrl, domain, iceServers, getUserMedia, iceTimeoutMs, timers, now }) {
    this.#sip = sip;
    this.#iceServers = iceServers || null;
    this.#wsUrl = wsUrl;
    this.#domain = domain;
    this.#getUserMedia = getUserMedia || getMicrophone;
    this.#iceTimeoutMs = iceTimeoutMs ?? ICE_GATHERING_TIMEOUT_MS;
    this.#timers = timers || {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (id) => globalThis.clearTimeout(id),
    };
    this.#now = now || (() => Date.now());
  }

  get domain() {
    return this.#domain;
  }

  // on registers a listener: 'change' (state), 'incoming' (state),
  // 'localstream' (MediaStream), 'remotetrack' ({ track, streams }) and
  // 'callended' (a history entry). It returns a function that removes it.
  on(type, fn) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
    return () => this.#listeners.get(type).delete(fn);
  }

  #emit(type, value) {
    for (const fn of this.#listeners.get(type) || []) {
      try {
        fn(value);
      } catch (err) {
        console.error(`softphone: ${type} listener failed`, err);
      }
    }
  }

  // reportError shows words as the current error (for problems found
  // outside the phone, such as the microphone test).
  reportError(words) {
    this.#set({ error: String(words || '') });
  }

  // snapshot is a copy of the state: safe to keep, never the password.
  snapshot() {
    return { ...this.#state, others: this.#state.others.map((o) => ({ ...o })) };
  }

  #set(patch) {
    Object.assign(this.#state, patch);
    this.#emit('change', this.snapshot());
  }

  // ---- sign-in ----------------------------------------------------------

  // register signs in and resolves with the registration state once it is
  // known: 'registered', 'signed-out' (refused) or 'disconnected'.
  register(user, password) {
    this.signOut();
    user = String(user ?? '').trim();
    if (!user || !password) {
      this.#set({ error: text.missingCredentials });
      return Promise.resolve(this.#state.registration);
    }
    // "alice" signs in to the configured domain; "alice@example.com" or
    // "sip:alice@example.com" names the domain itself.
    const bare = user.replace(/^sips?:/i, '');
    const at = bare.lastIndexOf('@');
    const authUser = at >= 0 ? bare.slice(0, at) : bare;
    const aor = at >= 0 ? `sip:${bare}` : `sip:${bare}@${this.#domain}`;

    let ua;
    try {
      const socket = new this.#sip.WebSocketInterface(this.#wsUrl);
      ua = new this.#sip.UA({
        sockets: [socket],
        uri: aor,
        authorization_user: authUser,
        password,
        register: true,
        connection_recovery_min_interval: 2,
        connection_recovery_max_interval: 30,
      });
    } catch (err) {
      console.warn('softphone: cannot create the user agent', err);
      this.#set({ registration: Reg.SIGNED_OUT, error: text.badUser(user) });
      return Promise.resolve(this.#state.registration);
    }
    this.#ua = ua;
    this.#credentials = { user: authUser, password };
    this.#everConnected = false;
    this.#bindUA(ua);
    this.#set({
      registration: Reg.CONNECTING,
      user: authUser,
      aor: aor.replace(/^sip:/, ''),
      status: text.connecting,
      error: '',
    });
    const outcome = new Promise((resolve) => {
      const off = this.on('change', (s) => {
        if (s.registration !== Reg.CONNECTING && s.registration !== Reg.REGISTERING) {
          off();
          resolve(s.registration);
        }
      });
    });
    ua.start();
    return outcome;
  }

  // signOut ends any call, unregisters and closes the connection.
  signOut() {
    const ua = this.#ua;
    if (!ua) return;
    this.#ua = null; // events of this UA are ignored from now on
    this.#credentials = null;
    this.#clearRetry();
    if (this.#call) {
      this.hangup();
      // JsSIP may tell the end of the call later, to a UA we no longer hear.
      if (this.#call) {
        this.#endCall({ outcome: this.#call.answeredAt ? 'answered' : 'cancelled', text: text.signedOut });
      }
    }
    // The calls on hold and a waiting call end with the user agent; taken
    // out of the lists first, so that their ends change nothing more.
    const others = this.#others;
    const waiting = this.#waiting;
    const previous = this.#previous;
    this.#others = [];
    this.#waiting = null;
    this.#previous = null;
    this.#replacing = null;
    for (const o of others) {
      terminate(o.session);
      stopStream(o.stream);
    }
    if (waiting) terminate(waiting.session);
    if (previous) stopStream(previous.stream);
    try {
      ua.stop();
    } catch (err) {
      console.warn('softphone: stopping the user agent failed', err);
    }
    this.#set({ ...initialState });
  }

  #bindUA(ua) {
    const mine = (fn) => (e) => {
      if (this.#ua === ua) fn(e);
    };
    ua.on(
      'connecting',
      mine(() => {
        // Each reconnection attempt says 'connecting' and then, when it
        // fails, 'disconnected': stay "disconnected" meanwhile instead of
        // flickering between the two.
        if (this.#state.registration !== Reg.DISCONNECTED) {
          this.#set({ registration: Reg.CONNECTING, status: text.connecting });
        }
      }),
    );
    ua.on(
      'connected',
      mine(() => {
        this.#everConnected = true;
        this.#set({ registration: Reg.REGISTERING, status: text.registering });
      }),
    );
    ua.on(
      'disconnected',
      mine(() => {
        this.#clearRetry();
        const words = this.#everConnected ? text.connectionLost : text.cannotConnect;
        this.#set({ registration: Reg.DISCONNECTED, status: words, error: words });
      }),
    );
    ua.on(
      'registered',
      mine(() => {
        this.#clearRetry();
        this.#set({
          registration: Reg.REGISTERED,
          status: text.registered(this.#state.aor),
          error: '',
        });
        // Back over a new WebSocket: the gateway now reaches the call
        // over it, and an ICE restart asked for meanwhile can go out.
        if (this.#restartPending) this.restartIce(this.#restartPending);
      }),
    );
    ua.on(
      'unregistered',
      mine(() => {
        // After a lost connection 'disconnected' has said it all.
        if (ua.isConnected() && this.#state.registration === Reg.REGISTERED) {
          this.#set({ registration: Reg.REGISTERING, status: text.registering });
        }
      }),
    );
    ua.on('registrationFailed', mine((e) => this.#onRegistrationFailed(ua, e)));
    ua.on('newRTCSession', mine((e) => this.#onNewSession(e)));
  }

  #onRegistrationFailed(ua, { response, cause }) {
    const code = response && response.status_code;
    if (code === 401 || code === 403 || code === 407 || cause === Cause.AUTHENTICATION_ERROR) {
      // Retrying with the same password cannot help: back to the form.
      this.signOut();
      this.#set({ error: text.wrongPassword });
      return;
    }
    if (cause === Cause.CONNECTION_ERROR) return; // 'disconnected' tells
    const words =
      cause === Cause.REQUEST_TIMEOUT
        ? text.registerTimeout
        : text.registerFailed(code, response && response.reason_phrase);
    this.#set({ registration: Reg.REGISTERING, status: words, error: words });
    this.#clearRetry();
    this.#retryTimer = this.#timers.setTimeout(() => {
      this.#retryTimer = null;
      if (this.#ua === ua && ua.isConnected()) ua.register();
    }, REGISTER_RETRY_MS);
  }

  #clearRetry() {
    if (this.#retryTimer !== null) {
      this.#timers.clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    }
  }

  // ---- calls ------------------------------------------------------------

  // call dials target: a number, a user name of the domain, or a SIP URI.
  // It resolves with true once the INVITE is on its way.
  async call(target) {
    const dial = cleanTarget(target);
    if (!dial) {
      this.#set({ error: text.noTarget });
      return false;
    }
    if (this.#call && !this.#parkCurrent()) {
      this.#set({ error: text.busyElsewhere });
      return false;
    }
    const ua = this.#ua;
    if (!ua || this.#state.registration !== Reg.REGISTERED) {
      this.#set({ error: text.notConnected });
      return false;
    }
    const call = this.#startCall('out', dial, dial);
    this.#set({ call: Call.CALLING, status: text.calling(dial), error: '' });

    const servers = this.#pcConfig();
    let stream;
    try {
      stream = await this.#openMedia();
    } catch (err) {
      if (this.#call === call) {
        this.#endCall({ outcome: 'failed', text: describeMediaError(err), error: true });
      }
      return false;
    }
    const pcConfig = await servers;
    if (this.#call !== call || this.#ua !== ua) {
      // Hung up (or signed out) while the browser asked for the microphone.
      stopStream(stream);
      return false;
    }
    this.#localStream = stream;
    this.#set({ video: hasVideo(stream) });
    this.#emit('localstream', stream);
    try {
      // newRTCSession fires inside ua.call() and attaches the session.
      ua.call(dial, {
        mediaStream: stream,
        mediaConstraints: constraintsOf(stream),
        pcConfig,
      });
    } catch (err) {
      console.warn('softphone: call failed', err);
      this.#endCall({ outcome: 'failed', text: text.badTarget(dial), error: true });
      return false;
    }
    return true;
  }

  // answer picks up the ringing call.
  async answer() {
    if (this.#waiting) {
      const w = this.#waiting;
      if (this.#call && !this.#parkCurrent()) return false;
      this.#waiting = null;
      this.#session = w.session;
      this.#call = w.call;
      this.#attach(w.session);
      this.#set({
        call: Call.INCOMING,
        direction: 'in',
        peer: w.call.peer,
        target: w.call.target,
        answeredAt: 0,
        muted: false,
        held: false,
        remoteHeld: false,
        earlyMedia: false,
        tonesReceived: '',
        transfer: '',
        transferredFrom: '',
        waiting: '',
      });
    }
    const session = this.#session;
    const call = this.#call;
    if (!session || this.#state.call !== Call.INCOMING) return false;
    this.#set({ call: Call.ANSWERING, status: text.answering, error: '' });
    const servers = this.#pcConfig();
    let stream;
    try {
      stream = await this.#openMedia();
    } catch (err) {
      if (this.#call === call) {
        call.override = { outcome: 'failed', text: describeMediaError(err), error: true };
        terminate(session, { status_code: 480, reason_phrase: 'Temporarily Unavailable' });
      }
      return false;
    }
    const pcConfig = await servers;
    if (this.#call !== call || session.isEnded()) {
      stopStream(stream);
      return false;
    }
    this.#localStream = stream;
    this.#set({ video: hasVideo(stream) });
    this.#emit('localstream', stream);
    try {
      session.answer({ mediaStream: stream, mediaConstraints: constraintsOf(stream), pcConfig });
    } catch (err) {
      console.warn('softphone: answer failed', err);
      return false;
    }
    return true;
  }

  // #pcConfig resolves with the RTCConfiguration of a call: the ICE
  // servers fetched afresh for it (TURN credentials expire), none when
  // there is no source or it fails. It never rejects.
  async #pcConfig() {
    const creds = this.#credentials;
    if (!this.#iceServers || !creds) return { iceServers: [] };
    try {
      const iceServers = await this.#iceServers(creds.user, creds.password);
      return { iceServers: Array.isArray(iceServers) ? iceServers : [] };
    } catch (err) {
      console.warn('softphone: no ICE servers', err);
      return { iceServers: [] };
    }
  }

  // #openMedia opens the microphone, and the camera too when video is
  // wanted. A camera that cannot be opened is no reason to fail the call:
  // it goes on with sound only, and the error says why. A microphone that
  // cannot be opened rejects.
  async #openMedia() {
    if (!this.#state.videoWanted) return this.#getUserMedia(MEDIA_CONSTRAINTS);
    try {
      return await this.#getUserMedia({ audio: true, video: VIDEO_CONSTRAINTS });
    } catch (err) {
      const stream = await this.#getUserMedia(MEDIA_CONSTRAINTS);
      this.#set({ error: describeCameraError(err) });
      return stream;
    }
  }

  // setVideo turns the video toggle on or off. Outside a call it is the
  // choice for the next one; in the active call it adds our camera to the
  // call or takes it off, with a re-INVITE (an SDP re-offer) either way.
  // It resolves with true when the state is as asked.
  async setVideo(on) {
    on = Boolean(on);
    const s = this.#session;
    if (!s || this.#state.call !== Call.ACTIVE) {
      if (this.#state.videoWanted !== on) this.#set({ videoWanted: on, videoNotice: text.videoNext(on) });
      return true;
    }
    if (this.#state.video === on) {
      this.#set({ videoWanted: on });
      return true;
    }
    if (this.#state.videoChanging || this.#state.held || !s.isReadyToReOffer()) {
      this.#set({ error: text.videoBusy });
      return false;
    }
    const pc = s.connection;
    const stream = this.#localStream;
    if (!pc || !stream) return false;
    this.#set({ videoChanging: true });
    let ok = false;
    try {
      ok = on ? await this.#addVideo(s, pc, stream) : await this.#removeVideo(s, pc, stream);
    } finally {
      if (this.#session === s) this.#set({ videoChanging: false });
    }
    return ok;
  }

  toggleVideo() {
    return this.setVideo(!this.#state.videoWanted);
  }

  async #addVideo(s, pc, stream) {
    let cam;
    try {
      cam = await this.#getUserMedia({ audio: false, video: VIDEO_CONSTRAINTS });
    } catch (err) {
      if (this.#session === s) this.#set({ error: describeCameraError(err) });
      return false;
    }
    const track = cam.getVideoTracks()[0];
    if (this.#session !== s || !track) {
      stopStream(cam);
      return false;
    }
    stream.addTrack(track);
    // A video m-line with nothing to send (the other side's video, or
    // ours turned off before) is used again: an on/off/on does not grow
    // the SDP by a section each time.
    const idle = pc
      .getTransceivers()
      .find((t) => !t.stopped && t.receiver.track && t.receiver.track.kind === 'video' && !t.sender.track && t.currentDirection !== 'stopped');
    let sender;
    if (idle) {
      await idle.sender.replaceTrack(track);
      if (idle.sender.setStreams) idle.sender.setStreams(stream);
      idle.direction = 'sendrecv';
      sender = idle.sender;
    } else {
      sender = pc.addTrack(track, stream);
    }
    const answered = await this.#reoffer(s);
    const tr = pc.getTransceivers().find((t) => t.sender === sender);
    const sending = answered && tr && !tr.stopped && /send/.test(tr.currentDirection || '');
    if (!sending) {
      // Refused (an error answer, or the video section turned down in
      // the answer): back to sound only, and the call goes on.
      stream.removeTrack(track);
      track.stop();
      try {
        if (tr && !tr.stopped) pc.removeTrack(sender);
      } catch (err) {
        console.debug('softphone: removeTrack', err);
      }
      if (this.#session === s) {
        const words = text.videoRefused(this.#call.peer);
        this.#set({ video: false, videoWanted: false, error: words, videoNotice: words });
        this.#emit('localstream', stream);
      }
      return false;
    }
    if (this.#session !== s) return false;
    this.#set({ video: true, videoWanted: true, videoNotice: text.videoOn, error: '' });
    this.#emit('localstream', stream);
    return true;
  }

  async #removeVideo(s, pc, stream) {
    for (const sender of pc.getSenders()) {
      if (!sender.track || sender.track.kind !== 'video') continue;
      const track = sender.track;
      pc.removeTrack(sender);
      stream.removeTrack(track);
      track.stop();
    }
    this.#set({ video: false, videoWanted: false, videoNotice: text.videoOff });
    this.#emit('localstream', stream);
    // Our camera is off in any case; the re-offer tells the other side to
    // stop waiting for our video.
    return this.#reoffer(s);
  }

  // #reoffer sends a re-INVITE with a new offer of the call's media and
  // resolves with true once the answer is applied, false when it was
  // refused. JsSIP's renegotiate() ends the call when a re-INVITE fails;
  // a refused video must not, so the failure is handled here: the offer
  // is rolled back and the call goes on as it was.
  #reoffer(s) {
    return new Promise((resolve) => {
      const pc = s.connection;
      const failed = () => {
        const back = pc && pc.signalingState === 'have-local-offer' ? pc.setLocalDescription({ type: 'rollback' }) : Promise.resolve();
        back.catch((err) => console.debug('softphone: rollback', err)).then(() => resolve(false));
      };
      try {
        if (typeof s._sendReinvite === 'function') {
          // The same re-INVITE as renegotiate(), with our own failure
          // handling (JsSIP 3.13: renegotiate = checks + _sendReinvite).
          s._sendReinvite({ eventHandlers: { succeeded: () => resolve(true), failed } });
        } else if (!s.renegotiate({}, () => resolve(true))) {
          resolve(false);
        }
      } catch (err) {
        console.warn('softphone: re-INVITE failed', err);
        resolve(false);
      }
    });
  }

  // decline turns the ringing call down with 603 Decline.
  decline() {
    if (this.#waiting) {
      terminate(this.#waiting.session, { status_code: 486, reason_phrase: 'Busy Here' });
      return;
    }
    if (this.#session && this.#state.call === Call.INCOMING) {
      terminate(this.#session, { status_code: 603, reason_phrase: 'Decline' });
    }
  }

  // hangup ends, cancels or declines the call, whatever stage it is at.
  hangup() {
    if (this.#session) {
      if (this.#state.call === Call.INCOMING) {
        this.decline();
      } else {
        terminate(this.#session);
      }
    } else if (this.#call) {
      // Still waiting for the microphone: no INVITE has left yet.
      this.#endCall({ outcome: 'cancelled', text: 'Call cancelled.' });
    }
  }

  setMuted(on) {
    const s = this.#session;
    if (!s || this.#state.call !== Call.ACTIVE) return false;
    if (on) s.mute({ audio: true });
    else s.unmute({ audio: true });
    return true;
  }

  toggleMute() {
    return this.setMuted(!this.#state.muted);
  }

  setHeld(on) {
    const s = this.#session;
    if (!s || this.#state.call !== Call.ACTIVE) return false;
    return on ? s.hold() : s.unhold();
  }

  toggleHold() {
    return this.setHeld(!this.#state.held);
  }

  // sendDTMF sends tones (0-9, *, #, A-D) in the active call, as SIP INFO
  // (JsSIP's default).
  sendDTMF(tones) {
    const s = this.#session;
    if (!s || this.#state.call !== Call.ACTIVE) return false;
    try {
      s.sendDTMF(String(tones));
      return true;
    } catch (err) {
      console.warn('softphone: DTMF not sent', err);
      return false;
    }
  }

  // restartIce re-offers the call's media with new ICE credentials (an
  // ICE restart, RFC 8445 §2.4), as RTCPeerConnection.restartIce() asks:
  // after a network change the old candidate pairs are dead, and the
  // gateway answers with its new credentials on the browser's leg alone.
  // The DTLS-SRTP session and the phone's side stay as they are. While
  // the WebSocket is down, or another re-offer is in progress, the
  // restart waits and goes out as soon as it can. It returns true when
  // the re-offer went out now.
  restartIce(reason = 'asked') {
    const s = this.#session;
    if (!s || this.#state.call !== Call.ACTIVE) return false;
    this.#clearRestartTimer();
    if (this.#state.registration !== Reg.REGISTERED) {
      this.#restartPending = reason;
      return false;
    }
    const pc = s.connection;
    let sent = false;
    try {
      // The next offer has new credentials in any case (iceRestart), but
      // restartIce() also tells the browser's ICE agent itself.
      if (pc && typeof pc.restartIce === 'function') pc.restartIce();
      sent = s.renegotiate({ rtcOfferConstraints: { iceRestart: true } }, () => {
        if (this.#session === s) this.#set({ iceRestarts: this.#state.iceRestarts + 1 });
      });
    } catch (err) {
      console.warn('softphone: ICE restart failed', err);
    }
    if (!sent) {
      this.#restartPending = reason;
      this.#restartTimer = this.#timers.setTimeout(() => {
        this.#restartTimer = null;
        if (this.#restartPending) this.restartIce(this.#restartPending);
      }, ICE_RESTART_RETRY_MS);
      return false;
    }
    this.#restartPending = '';
    console.info(`softphone: ICE restart (${reason})`);
    return true;
  }

  // networkChanged is for the browser's 'online' event: the network is
  // back, likely another one, and the call's ICE path with it is restarted.
  networkChanged() {
    return this.restartIce('online');
  }

  #onIceState(pc) {
    switch (pc.iceConnectionState) {
      case 'failed':
        this.restartIce('ice-failed');
        break;
      case 'disconnected':
        if (this.#restartTimer === null) {
          this.#restartTimer = this.#timers.setTimeout(() => {
            this.#restartTimer = null;
            if (this.#session && this.#session.connection === pc && pc.iceConnectionState === 'disconnected') {
              this.restartIce('ice-disconnected');
            }
          }, ICE_DISCONNECTED_RESTART_MS);
        }
        break;
      case 'connected':
      case 'completed':
        if (!this.#restartPending) this.#clearRestartTimer();
        break;
      default:
    }
  }

  #clearRestartTimer() {
    if (this.#restartTimer !== null) {
      this.#timers.clearTimeout(this.#restartTimer);
      this.#restartTimer = null;
    }
  }

  // #parkCurrent puts the active call on hold in the background, to make
  // room for another; false when there is no active call to park.
  #parkCurrent() {
    const session = this.#session;
    if (!session || this.#state.call !== Call.ACTIVE || this.#state.transfer === 'trying') return false;
    if (!session.isOnHold().local) session.hold();
    this.#others.push({ session, call: this.#call, stream: this.#localStream });
    this.#clearIceTimers();
    // An ICE restart waiting for this call is dropped: it is on hold,
    // and restartIce acts on the current call only.
    this.#clearRestartTimer();
    this.#restartPending = '';
    this.#session = null;
    this.#call = null;
    this.#localStream = null;
    this.#set({ call: Call.IDLE, peer: '', target: '', answeredAt: 0, others: this.#othersState() });
    return true;
  }

  #othersState() {
    return this.#others.map((o) => ({ id: o.call.id, peer: o.call.peer }));
  }

  // switchTo takes the held call id back (and holds the current one).
  switchTo(id) {
    const i = this.#others.findIndex((o) => o.call.id === id);
    if (i < 0) return false;
    if (this.#call && !this.#parkCurrent()) return false;
    const [o] = this.#others.splice(this.#others.findIndex((x) => x.call.id === id), 1);
    this.#session = o.session;
    this.#call = o.call;
    this.#localStream = o.stream;
    o.session.unhold();
    const { remote } = o.session.isOnHold();
    this.#set({
      call: Call.ACTIVE,
      direction: o.call.direction,
      peer: o.call.peer,
      target: o.call.target,
      answeredAt: o.call.answeredAt,
      muted: Boolean(o.session.isMuted().audio),
      held: false,
      remoteHeld: remote,
      others: this.#othersState(),
      status: text.connected(o.call.peer),
      error: '',
    });
    // The page plays one remote stream: this call's again.
    const pc = o.session.connection;
    for (const kind of ['audio', 'video']) {
      const r = pc && pc.getReceivers().find((x) => x.track && x.track.kind === kind && x.track.readyState === 'live');
      if (r) this.#emit('remotetrack', { track: r.track, streams: [] });
    }
    this.#set({ video: hasVideo(o.stream), remoteVideo: false });
    this.#emit('localstream', o.stream);
    if (pc) this.#remoteVideoChanged(pc);
    return true;
  }

  // transferHeld connects the held call id with the current call (an
  // attended transfer, RFC 3891): the held party is asked to call the
  // current one with a Replaces of our call with it, and once it has, both
  // of our calls end.
  transferHeld(id) {
    const o = this.#others.find((x) => x.call.id === id);
    const current = this.#session;
    if (!o || !current || this.#state.call !== Call.ACTIVE || this.#state.transfer === 'trying') return false;
    const from = o.call.peer;
    const to = this.#call.peer;
    const failed = (words) => this.#set({ transfer: 'failed', status: words, error: words });
    const live = () => this.#others.includes(o);
    try {
      o.session.refer(current.remote_identity.uri, {
        replaces: current,
        eventHandlers: {
          requestFailed: ({ response }) => live() && failed(text.transferRefused(from, to, response && response.status_code)),
          accepted: () => {
            o.call.override = { outcome: 'answered', text: text.transferred(from, to) };
            terminate(o.session);
          },
          failed: ({ status_line: line }) => live() && failed(text.transferFailed(from, to, line && line.status_code)),
        },
      });
    } catch (err) {
      console.warn('softphone: attended transfer failed', err);
      return false;
    }
    this.#set({ transfer: 'trying', status: text.transferring(from, to), error: '' });
    return true;
  }

  // #background follows a call that is not the current one (held, or
  // waiting): its end takes it out of the lists.
  #background(session, call) {
    if (this.#watched.has(session)) return;
    this.#watched.add(session);
    const gone = (event) => {
      if (this.#waiting && this.#waiting.session === session) {
        this.#waiting = null;
        this.#emit('callended', { direction: 'in', peer: call.peer, target: call.target, startedAt: call.startedAt, duration: 0, outcome: 'missed' });
        this.#set({ waiting: '', status: this.#state.call === Call.IDLE ? text.missedWhileBusy(call.peer) : this.#state.status });
        return;
      }
      const i = this.#others.findIndex((o) => o.session === session);
      if (i < 0) return;
      const [o] = this.#others.splice(i, 1);
      stopStream(o.stream);
      const words =
        call.override ||
        describeEnd(event, { direction: call.direction, peer: call.peer, answered: Boolean(call.answeredAt) });
      this.#emit('callended', this.#historyEntry(call, words.outcome));
      const patch = { others: this.#othersState(), status: words.text };
      if (call.override && this.#state.transfer === 'trying') patch.transfer = '';
      this.#set(patch);
    };
    session.on('ended', gone);
    session.on('failed', gone);
  }

  // transfer hands the other side of the active call to target (a blind
  // transfer, RFC 3515): the other side calls target, we hear how it goes,
  // and our call ends once target answers. If target does not answer, the
  // call goes on. It returns false when there is no call to transfer.
  transfer(target) {
    const dial = cleanTarget(target);
    const s = this.#session;
    const call = this.#call;
    if (!dial) {
      this.#set({ error: text.noTransferTarget });
      return false;
    }
    if (!s || this.#state.call !== Call.ACTIVE || this.#state.transfer === 'trying') return false;
    const peer = call.peer;
    const mine = (fn) => (e) => {
      if (this.#call === call) fn(e);
    };
    const failed = (words) => this.#set({ transfer: 'failed', status: words, error: words });
    try {
      s.refer(dial, {
        eventHandlers: {
          requestFailed: mine(({ response }) => failed(text.transferRefused(peer, dial, response && response.status_code))),
          trying: mine(() => this.#set({ status: text.transferCalling(peer, dial) })),
          progress: mine(() => this.#set({ status: text.transferRinging(peer, dial) })),
          accepted: mine(() => {
            call.override = { outcome: 'answered', text: text.transferred(peer, dial) };
            terminate(s);
          }),
          failed: mine(({ status_line: line }) => failed(text.transferFailed(peer, dial, line && line.status_code))),
        },
      });
    } catch (err) {
      console.warn('softphone: transfer failed', err);
      this.#set({ error: text.badTarget(dial) });
      return false;
    }
    this.#set({ transfer: 'trying', status: text.transferring(peer, dial), error: '' });
    return true;
  }

  // #followRefer takes the other side's REFER (it transfers us): we call
  // its target, and that call takes the place of this one once answered;
  // if it fails we are back in this one. A REFER with a Replaces (an
  // attended transfer) is followed the same way.
  async #followRefer(e) {
    const previous = { session: this.#session, call: this.#call, stream: this.#localStream };
    const uri = e.request.refer_to.uri;
    const { target } = this.#identify({ uri });
    if (this.#previous || this.#state.call !== Call.ACTIVE) {
      e.reject();
      return;
    }
    let stream;
    try {
      stream = await this.#openMedia();
    } catch (err) {
      e.reject();
      this.#set({ error: describeMediaError(err) });
      return;
    }
    const pcConfig = await this.#pcConfig();
    if (this.#session !== previous.session || previous.session.isEnded()) {
      stopStream(stream);
      e.reject();
      return;
    }
    this.#previous = previous;
    // The call we leave behind ends with the BYE of the one who
    // transferred us: it stops its microphone stream then.
    const release = () => {
      stopStream(previous.stream);
      if (this.#previous === previous) this.#previous = null;
    };
    previous.session.on('ended', release);
    previous.session.on('failed', release);
    const from = previous.call.peer;
    this.#startCall('out', target, target);
    this.#localStream = stream;
    this.#set({ video: hasVideo(stream) });
    this.#emit('localstream', stream);
    this.#set({ call: Call.CALLING, transferredFrom: from, status: text.beingTransferred(from, target), error: '' });
    try {
      // newRTCSession fires inside accept() and attaches the new session.
      e.accept(null, { mediaStream: stream, mediaConstraints: constraintsOf(stream), pcConfig });
    } catch (err) {
      console.warn('softphone: following a transfer failed', err);
      this.#endCall({ outcome: 'failed', text: text.badTarget(target), error: true });
    }
  }

  // getStats summarises the call's RTCPeerConnection statistics; null when
  // there is no call.
  async getStats() {
    const pc = this.#session && this.#session.connection;
    if (!pc) return null;
    const report = await pc.getStats();
    const out = {
      connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState,
      codec: null,
      outbound: null,
      inbound: null,
      roundTripTime: null,
      // video: { codec, inbound, outbound } of the video stream that
      // carries the most frames each way; null while there is none.
      video: null,
    };
    const codecs = new Map();
    let inboundCodec = null;
    let videoIn = null;
    let videoOut = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && (!videoIn || (s.framesDecoded || 0) > videoIn.framesDecoded)) {
        videoIn = {
          packetsReceived: s.packetsReceived || 0,
          framesDecoded: s.framesDecoded || 0,
          keyFramesDecoded: s.keyFramesDecoded || 0,
          frameWidth: s.frameWidth || 0,
          frameHeight: s.frameHeight || 0,
          pliCount: s.pliCount || 0, // PLIs we sent: asking for a key frame
          firCount: s.firCount || 0,
          nackCount: s.nackCount || 0,
          codecId: s.codecId,
        };
      }
      if (s.type === 'outbound-rtp' && s.kind === 'video' && (!videoOut || (s.framesEncoded || 0) > videoOut.framesEncoded)) {
        videoOut = {
          packetsSent: s.packetsSent || 0,
          framesEncoded: s.framesEncoded || 0,
          keyFramesEncoded: s.keyFramesEncoded || 0,
          frameWidth: s.frameWidth || 0,
          frameHeight: s.frameHeight || 0,
          pliCount: s.pliCount || 0, // PLIs the other side sent us
          codecId: s.codecId,
        };
      }
      if (s.type === 'codec') codecs.set(s.id, s.mimeType);
      if (s.type === 'outbound-rtp' && s.kind === 'audio') {
        out.outbound = { packetsSent: s.packetsSent, bytesSent: s.bytesSent };
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.inbound = {
          packetsReceived: s.packetsReceived,
          bytesReceived: s.bytesReceived,
          packetsLost: s.packetsLost,
          jitter: s.jitter,
          audioLevel: s.audioLevel,
        };
        inboundCodec = s.codecId;
      }
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        out.roundTripTime = s.currentRoundTripTime ?? null;
      }
    });
    out.codec = (inboundCodec && codecs.get(inboundCodec)) || null;
    if (videoIn || videoOut) {
      const id = (videoIn && videoIn.codecId) || (videoOut && videoOut.codecId);
      out.video = { codec: (id && codecs.get(id)) || null, inbound: videoIn, outbound: videoOut };
      if (videoIn) delete videoIn.codecId;
      if (videoOut) delete videoOut.codecId;
    }
    return out;
  }

  #startCall(direction, peer, target) {
    this.#call = { id: this.#nextId++, direction, peer, target, startedAt: this.#now(), answeredAt: 0, override: null };
    this.#set({
      direction,
      peer,
      target,
      answeredAt: 0,
      muted: false,
      held: false,
      remoteHeld: false,
      earlyMedia: false,
      tonesReceived: '',
      iceRestarts: 0,
      transfer: '',
      transferredFrom: '',
      video: false,
      remoteVideo: false,
      videoChanging: false,
      videoNotice: '',
    });
    return this.#call;
  }

  #onNewSession({ session, originator }) {
    if (originator === 'remote') {
      const { peer, target } = this.#identify(session.remote_identity);
      if (this.#replacing) {
        // An INVITE with Replaces for our current call (an attended
        // transfer elsewhere): it takes that call's place, answered at once.
        this.#replacing = null;
        const old = { session: this.#session, stream: this.#localStream };
        old.session.on('ended', () => stopStream(old.stream));
        old.session.on('failed', () => stopStream(old.stream));
        this.#localStream = null;
        this.#startCall('in', peer, target);
        this.#session = session;
        this.#attach(session);
        this.#set({ call: Call.INCOMING, status: text.replaced(peer), error: '' });
        this.answer();
        return;
      }
      if (this.#call && !this.#waiting && this.#state.call === Call.ACTIVE) {
        // Call waiting: it rings beside the current call.
        const call = { id: this.#nextId++, direction: 'in', peer, target, startedAt: this.#now(), answeredAt: 0, override: null };
        this.#waiting = { session, call };
        this.#background(session, call);
        this.#set({ waiting: peer, status: text.waiting(peer) });
        this.#emit('waiting', this.snapshot());
        return;
      }
      if (this.#call) {
        terminate(session, { status_code: 486, reason_phrase: 'Busy Here' });
        this.#emit('callended', {
          direction: 'in',
          peer,
          target,
          startedAt: this.#now(),
          duration: 0,
          outcome: 'missed',
        });
        this.#set({ status: text.missedWhileBusy(peer) });
        return;
      }
      this.#startCall('in', peer, target);
      this.#session = session;
      this.#attach(session);
      this.#set({ call: Call.INCOMING, status: text.incoming(peer), error: '' });
      this.#emit('incoming', this.snapshot());
      return;
    }
    this.#session = session;
    this.#attach(session);
  }

  // #identify names the other side: its display name, else its user part
  // (with the host when it is not our domain).
  #identify(identity) {
    const uri = identity && identity.uri;
    let target = '';
    if (uri) {
      target = uri.user ? (uri.host === this.#domain ? uri.user : `${uri.user}@${uri.host}`) : uri.host;
    }
    const name = identity && identity.display_name;
    return { peer: name ? `${name} (${target})` : target || 'Unknown caller', target };
  }

  #attach(session) {
    const mine = (fn) => (e) => {
      if (this.#session === session) fn(e);
    };
    session.on(
      'icecandidate',
      mine(({ ready }) => {
        // The first candidate starts the clock; ready() is idempotent, and
        // JsSIP calls it itself when gathering completes first.
        if (this.#iceTimers.size === 0) {
          const id = this.#timers.setTimeout(() => {
            this.#iceTimers.delete(id);
            ready();
          }, this.#iceTimeoutMs);
          this.#iceTimers.add(id);
        }
      }),
    );
    session.on(
      'sdp',
      mine((e) => {
        if (e.originator === 'local') this.#clearIceTimers();
      }),
    );
    session.on('peerconnection', mine(({ peerconnection }) => this.#watchPc(peerconnection)));
    if (session.connection) this.#watchPc(session.connection);

    session.on(
      'progress',
      mine((e) => {
        if (e.originator === 'remote' && this.#state.call === Call.CALLING) {
          this.#set({
            call: Call.RINGING,
            earlyMedia: Boolean(e.response && e.response.body),
            status: text.ringing(this.#call.peer),
          });
        }
      }),
    );
    const onAnswered = mine(() => {
      if (this.#call.answeredAt) return;
      this.#call.answeredAt = this.#now();
      this.#set({
        call: Call.ACTIVE,
        answeredAt: this.#call.answeredAt,
        status: text.connected(this.#call.peer),
        error: '',
      });
      this.#checkVideoAnswered(session);
    });
    session.on('accepted', onAnswered);
    session.on('confirmed', onAnswered);
    session.on('ended', mine((e) => this.#finish(e)));
    session.on('failed', mine((e) => this.#finish(e)));
    const onHold = mine(() => {
      const { local, remote } = session.isOnHold();
      const peer = this.#call.peer;
      let status = text.connected(peer);
      if (local) status = text.onHold(peer);
      else if (remote) status = text.heldByRemote(peer);
      this.#set({ held: local, remoteHeld: remote, status });
    });
    session.on('hold', onHold);
    session.on('unhold', onHold);
    session.on(
      'newDTMF',
      mine((e) => {
        if (e.originator === 'remote') this.#set({ tonesReceived: this.#state.tonesReceived + e.dtmf.tone });
      }),
    );
    session.on('refer', mine((e) => this.#followRefer(e)));
    session.on(
      'replaces',
      mine((e) => {
        this.#replacing = session;
        e.accept();
      }),
    );
    this.#background(session, this.#call);
    const onMute = mine(() => this.#set({ muted: Boolean(session.isMuted().audio) }));
    session.on('muted', onMute);
    session.on('unmuted', onMute);
  }

  // #checkVideoAnswered turns our camera off when the answer turned our
  // video down (a phone without video answers its m-line with port 0):
  // the call goes on with sound, and the page says why.
  #checkVideoAnswered(session) {
    const pc = session.connection;
    const stream = this.#localStream;
    if (!pc || !hasVideo(stream)) return;
    const sending = pc
      .getTransceivers()
      .some((t) => t.sender.track && t.sender.track.kind === 'video' && !t.stopped && /send/.test(t.currentDirection || ''));
    if (sending) {
      this.#set({ video: true, videoNotice: text.videoOn });
      return;
    }
    for (const t of videoTracks(stream)) {
      stream.removeTrack(t);
      t.stop();
    }
    const words = text.videoRefused(this.#call.peer);
    this.#set({ video: false, videoNotice: words, error: words });
    this.#emit('localstream', stream);
  }

  // #remoteVideoChanged updates remoteVideo from the call's receivers: a
  // video track that is live and unmuted (Chromium unmutes it when its
  // first frame arrives, and mutes it when the other side stops sending).
  #remoteVideoChanged(pc) {
    if (!this.#session || this.#session.connection !== pc) return;
    const on = pc.getReceivers().some((r) => r.track && r.track.kind === 'video' && r.track.readyState === 'live' && !r.track.muted);
    if (on === this.#state.remoteVideo) return;
    const peer = this.#call ? this.#call.peer : '';
    this.#set({ remoteVideo: on, videoNotice: on ? text.remoteVideoOn(peer) : text.remoteVideoOff(peer) });
  }

  #watchPc(pc) {
    if (this.#watchedPcs.has(pc)) return;
    this.#watchedPcs.add(pc);
    pc.addEventListener('track', (e) => {
      if (e.track.kind === 'video') {
        const changed = () => this.#remoteVideoChanged(pc);
        e.track.addEventListener('mute', changed);
        e.track.addEventListener('unmute', changed);
        e.track.addEventListener('ended', changed);
      }
      if (this.#session && this.#session.connection === pc) {
        this.#emit('remotetrack', { track: e.track, streams: e.streams || [] });
        if (e.track.kind === 'video') this.#remoteVideoChanged(pc);
      }
    });
    pc.addEventListener('iceconnectionstatechange', () => {
      if (this.#session && this.#session.connection === pc) this.#onIceState(pc);
    });
  }

  #clearIceTimers() {
    for (const id of this.#iceTimers) this.#timers.clearTimeout(id);
    this.#iceTimers.clear();
  }

  #finish(event) {
    const call = this.#call;
    const words =
      call.override ||
      describeEnd(event, { direction: call.direction, peer: call.peer, answered: Boolean(call.answeredAt) });
    this.#endCall(words);
    const back = this.#previous;
    if (back && back.call !== call && !back.session.isEnded()) {
      // The call we were transferred to failed: back in the one we were in.
      this.#previous = null;
      this.#session = back.session;
      this.#call = back.call;
      this.#localStream = back.stream;
      const { local, remote } = back.session.isOnHold();
      const again = text.transferBack(call.peer, back.call.peer, words.text);
      this.#set({
        call: Call.ACTIVE,
        direction: back.call.direction,
        peer: back.call.peer,
        target: back.call.target,
        answeredAt: back.call.answeredAt,
        muted: Boolean(back.session.isMuted().audio),
        held: local,
        remoteHeld: remote,
        video: hasVideo(back.stream),
        status: again,
        error: again,
      });
      this.#emit('localstream', back.stream);
    }
  }

  // #historyEntry is the call history's record of call, ended now.
  #historyEntry(call, outcome) {
    return {
      direction: call.direction,
      peer: call.peer,
      target: call.target,
      startedAt: call.startedAt,
      duration: call.answeredAt ? Math.round((this.#now() - call.answeredAt) / 1000) : 0,
      outcome,
    };
  }

  #endCall({ outcome, text: words, error }) {
    const call = this.#call;
    this.#clearIceTimers();
    this.#clearRestartTimer();
    this.#restartPending = '';
    stopStream(this.#localStream);
    this.#localStream = null;
    this.#session = null;
    this.#call = null;
    this.#emit('callended', this.#historyEntry(call, outcome));
    const reg = this.#state.registration;
    this.#set({
      call: Call.IDLE,
      direction: '',
      peer: '',
      target: '',
      answeredAt: 0,
      muted: false,
      held: false,
      remoteHeld: false,
      earlyMedia: false,
      tonesReceived: '',
      iceRestarts: 0,
      transfer: '',
      transferredFrom: '',
      video: false,
      remoteVideo: false,
      videoChanging: false,
      videoNotice: '',
      status: words,
      // A connection problem already shown stays shown.
      error: error ? words : reg === Reg.DISCONNECTED ? this.#state.error : '',
    });
  }
}

// constraintsOf is what JsSIP is told of a stream it is given: with
// video: false it would take the camera's track out of it.
function constraintsOf(stream) {
  return { audio: true, video: hasVideo(stream) };
}

function hasVideo(stream) {
  return Boolean(stream && videoTracks(stream).some((t) => t.readyState === 'live'));
}

function videoTracks(stream) {
  return stream.getTracks().filter((t) => t.kind === 'video');
}

function stopStream(stream) {
  if (stream) for (const t of stream.getTracks()) t.stop();
}

function terminate(session, options) {
  try {
    session.terminate(options);
  } catch (err) {
    // Already ended: JsSIP throws InvalidStateError.
    console.debug('softphone: terminate', err);
  }
}
