// Phone against a fake JsSIP: sign-in, errors in words, calls, ICE timing.
// No browser, no network: each test runs in milliseconds.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  Call,
  ICE_DISCONNECTED_RESTART_MS,
  ICE_GATHERING_TIMEOUT_MS,
  ICE_RESTART_RETRY_MS,
  Phone,
  Reg,
  cleanTarget,
} from '../src/phone.js';
import { FakePeerConnection, FakeUA, fakeSip, fakeStream, fakeTimers } from './fakesip.js';

const WS = 'ws://gw.test/ws';

function setup({ mic, iceServers } = {}) {
  const timers = fakeTimers();
  let clock = 1_000_000;
  const streams = [];
  const phone = new Phone({
    sip: fakeSip,
    wsUrl: WS,
    domain: 'example.test',
    iceServers,
    timers,
    now: () => clock,
    getUserMedia: mic || (async () => {
      const s = fakeStream();
      streams.push(s);
      return s;
    }),
  });
  const ended = [];
  phone.on('callended', (e) => ended.push(e));
  return {
    phone,
    timers,
    streams,
    ended,
    advance: (ms) => (clock += ms),
  };
}

async function registered(t) {
  const outcome = t.phone.register('alice', 'secret');
  const ua = FakeUA.last;
  ua.connect();
  ua.emit('registered', {});
  assert.equal(await outcome, Reg.REGISTERED);
  return ua;
}

describe('sign-in', () => {
  test('registers with the configured domain and WebSocket', async () => {
    const t = setup();
    const outcome = t.phone.register(' alice ', 'secret');
    const ua = FakeUA.last;
    assert.equal(ua.config.uri, 'sip:alice@example.test');
    assert.equal(ua.config.authorization_user, 'alice');
    assert.equal(ua.config.password, 'secret');
    assert.equal(ua.config.sockets[0].url, WS);
    assert.equal(ua.started, true);
    assert.equal(t.phone.snapshot().registration, Reg.CONNECTING);
    ua.connect();
    assert.equal(t.phone.snapshot().registration, Reg.REGISTERING);
    ua.emit('registered', {});
    assert.equal(await outcome, Reg.REGISTERED);
    const s = t.phone.snapshot();
    assert.equal(s.status, 'Ready. Signed in as alice@example.test.');
    assert.equal(s.error, '');
    assert.ok(!JSON.stringify(s).includes('secret'), 'the state must never hold the password');
  });

  test('a user with a domain keeps it', () => {
    const t = setup();
    t.phone.register('sip:bob@other.test', 'pw');
    assert.equal(FakeUA.last.config.uri, 'sip:bob@other.test');
    assert.equal(FakeUA.last.config.authorization_user, 'bob');
  });

  for (const code of [401, 403, 407]) {
    test(`${code} means a wrong password, and signs out`, async () => {
      const t = setup();
      const outcome = t.phone.register('alice', 'bad');
      const ua = FakeUA.last;
      ua.connect();
      ua.emit('registrationFailed', {
        response: { status_code: code, reason_phrase: 'Nope' },
        cause: code === 403 ? 'Rejected' : 'Authentication Error',
      });
      assert.equal(await outcome, Reg.SIGNED_OUT);
      assert.equal(t.phone.snapshot().error, 'Wrong user name or password.');
      assert.equal(ua.stopped, true);
      // Later events of the stopped agent change nothing.
      ua.emit('registered', {});
      assert.equal(t.phone.snapshot().registration, Reg.SIGNED_OUT);
    });
  }

  test('another failure is shown and retried', async () => {
    const t = setup();
    t.phone.register('alice', 'pw');
    const ua = FakeUA.last;
    ua.connect();
    ua.emit('registrationFailed', {
      response: { status_code: 503, reason_phrase: 'Service Unavailable' },
      cause: 'SIP Failure Code',
    });
    assert.match(t.phone.snapshot().error, /Sign-in failed \(503 Service Unavailable\)/);
    t.timers.fireAll();
    assert.equal(ua.registerCalls, 1);
  });

  test('missing password and bad user name are said so', async () => {
    const t = setup();
    assert.equal(await t.phone.register('alice', ''), Reg.SIGNED_OUT);
    assert.equal(t.phone.snapshot().error, 'Enter your user name and password.');
    assert.equal(await t.phone.register('al ice', 'pw'), Reg.SIGNED_OUT);
    assert.match(t.phone.snapshot().error, /not a valid user name/);
  });

  test('an unreachable gateway, then a lost connection', async () => {
    const t = setup();
    const outcome = t.phone.register('alice', 'pw');
    const ua = FakeUA.last;
    ua.emit('connecting', {});
    ua.emit('disconnected', { error: true });
    assert.equal(await outcome, Reg.DISCONNECTED);
    assert.equal(t.phone.snapshot().error, 'Cannot connect to the gateway. Trying again…');
    // JsSIP's next attempt does not flicker the state.
    ua.emit('connecting', {});
    assert.equal(t.phone.snapshot().registration, Reg.DISCONNECTED);
    ua.connect();
    ua.emit('registered', {});
    assert.equal(t.phone.snapshot().error, '');
    ua.disconnect();
    ua.emit('unregistered', {});
    const s = t.phone.snapshot();
    assert.equal(s.registration, Reg.DISCONNECTED);
    assert.equal(s.error, 'Connection to the gateway lost. Reconnecting…');
  });

  test('sign out stops the agent', async () => {
    const t = setup();
    const ua = await registered(t);
    t.phone.signOut();
    assert.equal(ua.stopped, true);
    assert.equal(t.phone.snapshot().registration, Reg.SIGNED_OUT);
  });
});

describe('outgoing calls', () => {
  test('dials with the microphone, no ICE servers, and reports busy', async () => {
    const t = setup();
    const ua = await registered(t);
    assert.equal(await t.phone.call('1000'), true);
    const { target, options, session } = ua.calls[0];
    assert.equal(target, '1000');
    assert.deepEqual(options.pcConfig, { iceServers: [] });
    assert.equal(options.mediaStream, t.streams[0]);
    assert.equal(t.phone.snapshot().call, Call.CALLING);
    session.emit('progress', { originator: 'remote', response: { status_code: 180 } });
    assert.equal(t.phone.snapshot().call, Call.RINGING);
    assert.equal(t.phone.snapshot().status, '1000 is ringing…');
    session.emit('failed', {
      originator: 'remote',
      cause: 'Busy',
      message: { status_code: 486, reason_phrase: 'Busy Here' },
    });
    const s = t.phone.snapshot();
    assert.equal(s.call, Call.IDLE);
    assert.equal(s.error, '1000 is busy.');
    assert.equal(t.streams[0].track.stopped, true, 'the microphone is released');
    assert.equal(t.ended.length, 1);
    assert.equal(t.ended[0].outcome, 'busy');
    assert.equal(t.ended[0].direction, 'out');
  });

  const failures = [
    [{ cause: 'Not Found', message: { status_code: 404 } }, '1000 was not found. Check the number or address.'],
    [{ cause: 'Not Found', message: { status_code: 604 } }, '1000 was not found. Check the number or address.'],
    [{ cause: 'Busy', message: { status_code: 600 } }, '1000 is busy.'],
    [{ cause: 'Unavailable', message: { status_code: 480 } }, '1000 is not available right now.'],
    [{ cause: 'Rejected', message: { status_code: 603 } }, '1000 refused the call.'],
    [{ cause: 'Authentication Error', message: { status_code: 407 } }, 'The gateway did not accept your password for this call.'],
    [{ cause: 'Connection Error' }, 'The connection to the gateway was lost.'],
    [{ cause: 'SIP Failure Code', message: { status_code: 500, reason_phrase: 'Server Error' } }, 'The call failed (500 Server Error).'],
  ];
  for (const [event, words] of failures) {
    test(`${event.cause} ${event.message?.status_code ?? ''} → ${words}`, async () => {
      const t = setup();
      const ua = await registered(t);
      await t.phone.call('1000');
      ua.calls[0].session.emit('failed', { originator: 'remote', ...event });
      assert.equal(t.phone.snapshot().error, words);
    });
  }

  test('no microphone permission', async () => {
    const denied = Object.assign(new Error('Permission denied'), { name: 'NotAllowedError' });
    const t = setup({ mic: async () => Promise.reject(denied) });
    const ua = await registered(t);
    assert.equal(await t.phone.call('1000'), false);
    assert.equal(ua.calls.length, 0, 'no INVITE without a microphone');
    const s = t.phone.snapshot();
    assert.equal(s.call, Call.IDLE);
    assert.match(s.error, /^No microphone permission\./);
    assert.equal(t.ended[0].outcome, 'failed');
  });

  test('hanging up while the browser asks for the microphone', async () => {
    let grant;
    const t = setup({ mic: () => new Promise((resolve) => (grant = resolve)) });
    const ua = await registered(t);
    const calling = t.phone.call('1000');
    t.phone.hangup();
    const stream = fakeStream();
    grant(stream);
    assert.equal(await calling, false);
    assert.equal(ua.calls.length, 0);
    assert.equal(stream.track.stopped, true);
    assert.equal(t.ended[0].outcome, 'cancelled');
  });

  test('not signed in, nothing to dial, a call already up', async () => {
    const t = setup();
    assert.equal(await t.phone.call('1000'), false);
    assert.match(t.phone.snapshot().error, /^Not connected/);
    const ua = await registered(t);
    assert.equal(await t.phone.call('  '), false);
    assert.equal(t.phone.snapshot().error, 'Enter a number or SIP address to call.');
    await t.phone.call('1000');
    assert.equal(await t.phone.call('2000'), false);
    assert.equal(t.phone.snapshot().error, 'Hang up the current call first.');
    assert.equal(ua.calls.length, 1);
  });

  test('answered: timer, mute, hold, DTMF, hang up', async () => {
    const t = setup();
    const ua = await registered(t);
    await t.phone.call('+1 (555) 010-0000');
    const { target, session } = ua.calls[0];
    assert.equal(target, '+15550100000');
    session.emit('accepted', {});
    let s = t.phone.snapshot();
    assert.equal(s.call, Call.ACTIVE);
    assert.ok(s.answeredAt > 0);
    assert.equal(t.phone.toggleMute(), true);
    assert.equal(t.phone.snapshot().muted, true);
    t.phone.toggleHold();
    assert.equal(t.phone.snapshot().held, true);
    assert.match(t.phone.snapshot().status, /on hold/);
    t.phone.toggleHold();
    assert.equal(t.phone.sendDTMF('5'), true);
    assert.equal(t.phone.sendDTMF('#'), true);
    assert.equal(t.phone.sendDTMF('x'), false);
    assert.deepEqual(session.dtmf, ['5', '#']);
    t.advance(65_000);
    t.phone.hangup();
    session.emit('ended', { originator: 'local', cause: 'Terminated' }); // JsSIP says so after BYE
    s = t.phone.snapshot();
    assert.equal(s.call, Call.IDLE);
    assert.equal(s.status, 'Call ended.');
    assert.equal(t.ended.length, 1);
    assert.equal(t.ended[0].duration, 65);
    assert.equal(t.ended[0].outcome, 'answered');
  });
});

describe('ICE servers', () => {
  const turn = [{ urls: ['turn:turn.example:3478'], username: '1767312000:alice', credential: 'pw' }];

  test('each call asks for them afresh, as the signed-in user', async () => {
    const asked = [];
    const t = setup({ iceServers: async (user, password) => (asked.push([user, password]), turn) });
    const ua = await registered(t);
    assert.equal(await t.phone.call('1000'), true);
    assert.deepEqual(ua.calls[0].options.pcConfig, { iceServers: turn });
    ua.calls[0].session.emit('failed', { originator: 'remote', cause: 'Busy', message: { status_code: 486 } });
    const session = ua.incoming({ user: 'bob', host: 'example.test', name: 'Bob' });
    assert.equal(await t.phone.answer(), true);
    assert.deepEqual(session.answered.pcConfig, { iceServers: turn });
    assert.deepEqual(asked, [['alice', 'secret'], ['alice', 'secret']]);
  });

  test('a failure leaves the call without servers', async () => {
    const t = setup({ iceServers: async () => { throw new Error('offline'); } });
    const ua = await registered(t);
    assert.equal(await t.phone.call('1000'), true);
    assert.deepEqual(ua.calls[0].options.pcConfig, { iceServers: [] });
  });
});

describe('incoming calls', () => {
  test('rings, is answered with the microphone, and the caller hangs up', async () => {
    const t = setup();
    const ua = await registered(t);
    const rang = [];
    t.phone.on('incoming', (s) => rang.push(s.peer));
    const session = ua.incoming({ user: 'bob', host: 'example.test', name: 'Bob' });
    assert.deepEqual(rang, ['Bob (bob)']);
    assert.equal(t.phone.snapshot().call, Call.INCOMING);
    assert.equal(await t.phone.answer(), true);
    assert.equal(session.answered.mediaStream, t.streams[0]);
    assert.deepEqual(session.answered.pcConfig, { iceServers: [] });
    session.emit('accepted', {});
    assert.equal(t.phone.snapshot().call, Call.ACTIVE);
    session.emit('ended', { originator: 'remote', cause: 'Terminated' });
    assert.equal(t.phone.snapshot().status, 'Bob (bob) hung up.');
    assert.equal(t.ended[0].direction, 'in');
    assert.equal(t.ended[0].target, 'bob');
  });

  test('declined with 603', async () => {
    const t = setup();
    const ua = await registered(t);
    const session = ua.incoming({ user: 'carol', host: 'elsewhere.test' });
    t.phone.decline();
    assert.equal(session.terminated.status_code, 603);
    assert.equal(t.phone.snapshot().call, Call.IDLE);
    assert.equal(t.ended[0].outcome, 'declined');
    assert.equal(t.ended[0].peer, 'carol@elsewhere.test');
  });

  test('missed when the caller gives up', async () => {
    const t = setup();
    const ua = await registered(t);
    const session = ua.incoming({ user: 'bob', host: 'example.test' });
    session.emit('failed', { originator: 'remote', cause: 'Canceled', message: null });
    assert.equal(t.phone.snapshot().status, 'Missed call from bob.');
    assert.equal(t.ended[0].outcome, 'missed');
  });

  test('a second call gets 486 while one is up', async () => {
    const t = setup();
    const ua = await registered(t);
    ua.incoming({ user: 'bob', host: 'example.test' });
    const second = ua.incoming({ user: 'dave', host: 'example.test' });
    assert.equal(second.terminated.status_code, 486);
    assert.equal(t.phone.snapshot().peer, 'bob');
    assert.equal(t.ended[0].outcome, 'missed');
  });

  test('no microphone when answering: the call is refused and the user told', async () => {
    const denied = Object.assign(new Error('denied'), { name: 'NotAllowedError' });
    const t = setup({ mic: async () => Promise.reject(denied) });
    const ua = await registered(t);
    const session = ua.incoming({ user: 'bob', host: 'example.test' });
    assert.equal(await t.phone.answer(), false);
    assert.equal(session.terminated.status_code, 480);
    assert.match(t.phone.snapshot().error, /^No microphone permission\./);
  });
});

describe('ICE gathering', () => {
  test('the first candidate starts one timer that releases the offer', async () => {
    const t = setup();
    const ua = await registered(t);
    await t.phone.call('1000');
    const { session } = ua.calls[0];
    let readies = 0;
    const ready = () => readies++;
    session.emit('icecandidate', { candidate: { candidate: 'host 1' }, ready });
    session.emit('icecandidate', { candidate: { candidate: 'host 2' }, ready });
    assert.equal(t.timers.pending.size, 1);
    assert.equal([...t.timers.pending.values()][0].ms, ICE_GATHERING_TIMEOUT_MS);
    t.timers.fireAll();
    assert.equal(readies, 1);
  });

  test('gathering that completes first cancels the timer', async () => {
    const t = setup();
    const ua = await registered(t);
    await t.phone.call('1000');
    const { session } = ua.calls[0];
    session.emit('icecandidate', { candidate: {}, ready: () => {} });
    session.emit('sdp', { originator: 'local', type: 'offer', sdp: 'v=0' });
    assert.equal(t.timers.pending.size, 0);
  });
});

describe('ICE restart', () => {
  // activeCall has the registered phone in an answered call whose session
  // has a fake RTCPeerConnection.
  async function activeCall() {
    const t = setup();
    const ua = await registered(t);
    await t.phone.call('1000');
    const { session } = ua.calls[0];
    const pc = new FakePeerConnection();
    session.connection = pc;
    session.emit('peerconnection', { peerconnection: pc });
    session.emit('accepted', {});
    pc.ice('connected');
    return { t, ua, session, pc };
  }

  test('failed ICE restarts at once, with new credentials, and counts the answer', async () => {
    const { t, session, pc } = await activeCall();
    pc.ice('failed');
    assert.equal(session.renegotiations.length, 1);
    assert.deepEqual(session.renegotiations[0].options, { rtcOfferConstraints: { iceRestart: true } });
    assert.equal(pc.restarts, 1);
    assert.equal(t.phone.snapshot().iceRestarts, 0);
    session.renegotiations[0].done();
    assert.equal(t.phone.snapshot().iceRestarts, 1);
  });

  test('disconnected ICE restarts after a while, unless it recovers', async () => {
    const { t, session, pc } = await activeCall();
    pc.ice('disconnected');
    assert.equal(session.renegotiations.length, 0);
    assert.equal([...t.timers.pending.values()][0].ms, ICE_DISCONNECTED_RESTART_MS);
    pc.ice('connected'); // a blip
    assert.equal(t.timers.pending.size, 0);
    pc.ice('disconnected');
    t.timers.fireAll();
    assert.equal(session.renegotiations.length, 1);
  });

  test('while the WebSocket is down the restart waits for the new registration', async () => {
    const { t, ua, session, pc } = await activeCall();
    ua.disconnect();
    assert.equal(t.phone.networkChanged(), false); // the browser's 'online'
    pc.ice('failed');
    assert.equal(session.renegotiations.length, 0);
    assert.equal(t.phone.snapshot().call, Call.ACTIVE, 'a lost WebSocket does not end the call');
    ua.connect();
    assert.equal(session.renegotiations.length, 0, 'not before the gateway knows the new connection');
    ua.emit('registered', {});
    assert.equal(session.renegotiations.length, 1);
  });

  test('a re-offer in progress makes the restart try again', async () => {
    const { t, session } = await activeCall();
    session.reofferBusy = true;
    assert.equal(t.phone.restartIce(), false);
    assert.equal([...t.timers.pending.values()][0].ms, ICE_RESTART_RETRY_MS);
    session.reofferBusy = false;
    t.timers.fireAll();
    assert.equal(session.renegotiations.length, 1);
  });

  test('no call, or a call that ended, restarts nothing', async () => {
    const { t, session, pc } = await activeCall();
    session.emit('ended', { originator: 'remote', cause: 'Terminated' });
    pc.ice('failed');
    assert.equal(t.phone.restartIce(), false);
    assert.equal(session.renegotiations.length, 0);
    assert.equal(t.timers.pending.size, 0);
  });
});

test('cleanTarget keeps URIs and user names, tidies numbers', () => {
  const cases = [
    ['1000', '1000'],
    [' +44 20 7946 0000 ', '+442079460000'],
    ['(555) 010-0000', '5550100000'],
    ['*98#', '*98#'],
    ['bob', 'bob'],
    ['sip:bob@example.com', 'sip:bob@example.com'],
    ['', ''],
  ];
  for (const [input, want] of cases) assert.equal(cleanTarget(input), want, input);
});

describe('video', () => {
  // avStream is a MediaStream stand-in with a microphone and, when video,
  // a camera track.
  function avStream(video) {
    const track = (kind) => ({ kind, readyState: 'live', stopped: false, stop() { this.stopped = true; this.readyState = 'ended'; } });
    const tracks = [track('audio'), ...(video ? [track('video')] : [])];
    return { tracks, getTracks: () => tracks, getVideoTracks: () => tracks.filter((t) => t.kind === 'video') };
  }

  test('the toggle outside a call is the choice for the next one: the call opens the camera, and JsSIP is told so', async () => {
    const asked = [];
    const t = setup({ mic: async (c) => (asked.push(c), avStream(Boolean(c.video))) });
    const ua = await registered(t);
    assert.equal(await t.phone.setVideo(true), true);
    let s = t.phone.snapshot();
    assert.equal(s.videoWanted, true);
    assert.equal(s.video, false, 'no call, no camera yet');
    assert.equal(s.videoNotice, 'Video on for the next call.');
    await t.phone.call('1000');
    assert.ok(asked[0].audio && asked[0].video, `getUserMedia asked for ${JSON.stringify(asked[0])}`);
    const { options } = ua.calls[0];
    // With video: false, JsSIP would take the camera out of the stream.
    assert.deepEqual(options.mediaConstraints, { audio: true, video: true });
    assert.equal(t.phone.snapshot().video, true);
    ua.calls[0].session.emit('failed', { originator: 'remote', cause: 'Busy', message: { status_code: 486 } });
    s = t.phone.snapshot();
    assert.equal(s.video, false);
    assert.equal(s.videoWanted, true, 'the choice stays for the next call');
    assert.equal(options.mediaStream.tracks[1].stopped, true, 'the camera is released with the call');
  });

  test('with the toggle off, a call asks for the microphone alone', async () => {
    const asked = [];
    const t = setup({ mic: async (c) => (asked.push(c), avStream(Boolean(c.video))) });
    const ua = await registered(t);
    await t.phone.call('1000');
    assert.equal(asked[0].video, false);
    assert.deepEqual(ua.calls[0].options.mediaConstraints, { audio: true, video: false });
  });

  test('a camera that cannot be opened leaves a call with sound, and says why', async () => {
    const t = setup({
      mic: async (c) => {
        if (c.video) throw Object.assign(new Error('busy'), { name: 'NotReadableError' });
        return avStream(false);
      },
    });
    const ua = await registered(t);
    await t.phone.setVideo(true);
    assert.equal(await t.phone.call('1000'), true);
    assert.equal(ua.calls.length, 1, 'the call went out');
    const s = t.phone.snapshot();
    assert.equal(s.video, false);
    assert.equal(s.error, 'The camera could not be started (another app may be using it): sound only.');
    assert.deepEqual(ua.calls[0].options.mediaConstraints, { audio: true, video: false });
  });

  test('turning video on during a call needs an active call that can take a re-offer', async () => {
    const t = setup({ mic: async (c) => avStream(Boolean(c.video)) });
    const ua = await registered(t);
    await t.phone.call('1000');
    const { session } = ua.calls[0];
    session.isReadyToReOffer = () => false; // JsSIP: an offer/answer in progress
    session.emit('accepted', {});
    assert.equal(t.phone.snapshot().call, Call.ACTIVE);
    assert.equal(await t.phone.setVideo(true), false);
    assert.equal(t.phone.snapshot().error, 'Wait a moment: the call is being changed.');
    assert.equal(t.phone.snapshot().video, false);
  });
});
