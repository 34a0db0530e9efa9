// The page: reads the controls of index.html, shows the phone's state and
// passes the user's clicks and key presses to the handlers main.js gives.
// Text from the network (a caller's name) only ever goes in textContent.

const DIGITS = new Set(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#']);

const REG_LABEL = {
  'signed-out': 'Signed out',
  connecting: 'Connecting…',
  registering: 'Signing in…',
  registered: 'Ready',
  disconnected: 'Offline, reconnecting',
};

const CALL_LABEL = {
  calling: 'Calling…',
  ringing: 'Ringing…',
  answering: 'Answering…',
  active: 'Connected',
};

const OUTCOME_LABEL = {
  answered: '',
  missed: 'Missed',
  declined: 'Declined',
  busy: 'Busy',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

// handlers: signIn(user, password), signOut(), call(target), answer(),
// decline(), hangup(), mute(), hold(), transfer(target), consult(target),
// switchTo(id), transferHeld(id), video() (the video toggle), digit(d), micTest(), redial(target),
// clearHistory(), gesture() (any click or key: lets audio start).
export function createUI(doc, handlers) {
  const $ = (id) => {
    const el = doc.getElementById(id);
    if (!el) throw new Error(`softphone: #${id} is missing from the page`);
    return el;
  };
  const el = {
    reg: $('reg'),
    regText: $('reg-text'),
    status: $('status'),
    error: $('error'),
    signin: $('signin'),
    user: $('user'),
    password: $('password'),
    signinButton: $('signin-button'),
    phone: $('phone'),
    incoming: $('incoming'),
    incomingFrom: $('incoming-from'),
    answer: $('answer'),
    decline: $('decline'),
    incall: $('incall'),
    callPeer: $('call-peer'),
    callState: $('call-state'),
    timer: $('timer'),
    mute: $('mute'),
    hold: $('hold'),
    hangup: $('hangup'),
    transferForm: $('transfer-form'),
    transferTarget: $('transfer-target'),
    transfer: $('transfer'),
    consult: $('consult'),
    waiting: $('waiting'),
    waitingFrom: $('waiting-from'),
    answerWaiting: $('answer-waiting'),
    declineWaiting: $('decline-waiting'),
    held: $('held'),
    heldList: $('held-list'),
    tones: $('tones'),
    dial: $('dial'),
    number: $('number'),
    backspace: $('backspace'),
    keypad: $('keypad'),
    call: $('call'),
    level: $('level'),
    micTest: $('mic-test'),
    signout: $('signout'),
    who: $('who'),
    history: $('history'),
    historyList: $('history-list'),
    historyEmpty: $('history-empty'),
    historyClear: $('history-clear'),
    remoteAudio: $('remote-audio'),
    video: $('video'),
    remoteVideo: $('remote-video'),
    localVideo: $('local-video'),
    videoToggle: $('video-toggle'),
    videoHint: $('video-hint'),
    videoStatus: $('video-status'),
  };
  const baseTitle = doc.title;
  let last = null; // the state shown last
  let timerId = null;

  el.signin.addEventListener('submit', (e) => {
    e.preventDefault();
    handlers.signIn(el.user.value.trim(), el.password.value);
  });
  el.dial.addEventListener('submit', (e) => {
    e.preventDefault();
    handlers.call(el.number.value);
  });
  el.keypad.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-digit]');
    if (b) handlers.digit(b.dataset.digit);
  });
  el.backspace.addEventListener('click', () => backspace());
  el.answer.addEventListener('click', () => handlers.answer());
  el.decline.addEventListener('click', () => handlers.decline());
  el.hangup.addEventListener('click', () => handlers.hangup());
  el.transferForm.addEventListener('submit', (e) => {
    e.preventDefault();
    handlers.transfer(el.transferTarget.value);
  });
  el.consult.addEventListener('click', () => handlers.consult(el.transferTarget.value));
  el.answerWaiting.addEventListener('click', () => handlers.answer());
  el.declineWaiting.addEventListener('click', () => handlers.decline());
  el.heldList.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-call]');
    if (!b) return;
    const id = Number(b.dataset.call);
    if (b.dataset.action === 'resume') handlers.switchTo(id);
    else handlers.transferHeld(id);
  });
  el.mute.addEventListener('click', () => handlers.mute());
  el.videoToggle.addEventListener('click', () => handlers.video());
  el.hold.addEventListener('click', () => handlers.hold());
  el.micTest.addEventListener('click', () => handlers.micTest());
  el.signout.addEventListener('click', () => handlers.signOut());
  el.historyClear.addEventListener('click', () => handlers.clearHistory());
  el.historyList.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-target]');
    if (b) handlers.redial(b.dataset.target);
  });
  doc.addEventListener('pointerdown', () => handlers.gesture(), true);
  doc.addEventListener('keydown', onKey, true);

  // Digits typed anywhere on the phone (except in a text field, where they
  // are just typed) work like the dial pad: they dial, or during a call send
  // tones.
  function onKey(e) {
    handlers.gesture();
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    if (el.phone.hidden) return;
    const t = e.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    if (DIGITS.has(e.key)) {
      e.preventDefault();
      flashKey(e.key);
      handlers.digit(e.key);
    } else if (e.key === 'Backspace' && !el.number.readOnly) {
      e.preventDefault();
      backspace();
    }
  }

  // renderHeld lists the calls on hold: each can be resumed, or, during
  // another call, connected with it (an attended transfer).
  function renderHeld(s, prev) {
    const others = s.others || [];
    el.held.hidden = others.length === 0;
    const key = JSON.stringify([others, s.call === 'active' && s.peer]);
    if (key === JSON.stringify([prev.others || [], prev.call === 'active' && prev.peer])) return;
    el.heldList.replaceChildren(
      ...others.map((o) => {
        const li = doc.createElement('li');
        const name = doc.createElement('span');
        name.textContent = o.peer;
        const resume = doc.createElement('button');
        resume.type = 'button';
        resume.dataset.call = String(o.id);
        resume.dataset.action = 'resume';
        resume.textContent = 'Resume';
        resume.setAttribute('aria-label', `Resume the call with ${o.peer}`);
        li.append(name, ' ', resume);
        if (s.call === 'active') {
          const join = doc.createElement('button');
          join.type = 'button';
          join.dataset.call = String(o.id);
          join.dataset.action = 'transfer';
          join.textContent = `Transfer to ${s.peer}`;
          join.setAttribute('aria-label', `Transfer ${o.peer} to ${s.peer}`);
          li.append(' ', join);
        }
        return li;
      }),
    );
  }

  // renderVideo shows the video area while a call has a picture either
  // way, and the toggle: its pressed state is the camera's (in a call)
  // or the choice for the next call; the live region says each change.
  function renderVideo(s, talking) {
    const on = talking ? s.video : s.videoWanted;
    el.video.hidden = !(talking && (s.video || s.remoteVideo));
    el.remoteVideo.hidden = !s.remoteVideo;
    el.localVideo.hidden = !s.video;
    el.video.classList.toggle('local-only', Boolean(s.video && !s.remoteVideo));
    el.remoteVideo.setAttribute('aria-label', s.peer ? `Video of ${s.peer}` : 'Video of the other side');
    el.videoToggle.setAttribute('aria-pressed', String(Boolean(on)));
    el.videoToggle.disabled = Boolean(s.videoChanging) || (talking && s.held);
    setText(el.videoToggle, on ? 'Video on' : 'Video off');
    setText(
      el.videoHint,
      talking
        ? on
          ? 'Your camera is on: press to turn it off'
          : 'Your camera is off: press to turn it on'
        : on
          ? 'Calls start with your camera'
          : 'Calls start with sound only',
    );
    el.videoToggle.setAttribute('aria-label', on ? 'Video on. Turn the camera off' : 'Video off. Turn the camera on');
    setText(el.videoStatus, s.videoNotice || '');
  }

  function backspace() {
    el.number.value = el.number.value.slice(0, -1);
  }

  function flashKey(d) {
    const b = el.keypad.querySelector(`button[data-digit="${d === '#' ? '\\#' : d}"]`);
    if (!b) return;
    b.classList.add('pressed');
    setTimeout(() => b.classList.remove('pressed'), 150);
  }

  function setText(node, value) {
    if (node.textContent !== value) node.textContent = value;
  }

  function startTimer(answeredAt) {
    const tick = () => {
      const s = Math.max(0, Math.floor((Date.now() - answeredAt) / 1000));
      setText(el.timer, formatDuration(s));
    };
    tick();
    if (timerId === null) timerId = setInterval(tick, 1000);
  }

  function stopTimer() {
    if (timerId !== null) clearInterval(timerId);
    timerId = null;
    setText(el.timer, '0:00');
  }

  // focusable reports whether node can hold the focus as things stand.
  function focusable(node) {
    return node && node !== doc.body && !node.disabled && node.getClientRects().length > 0;
  }

  function render(s) {
    const prev = last || {};
    last = s;
    const signedIn = s.registration !== 'signed-out';
    const inCall = s.call !== 'idle';
    const ringing = s.call === 'incoming' || s.call === 'answering';

    el.reg.dataset.state = s.registration;
    setText(el.regText, REG_LABEL[s.registration] || s.registration);
    // The alert says it already: the status line need not repeat it.
    setText(el.status, s.status === s.error ? '' : s.status);
    setText(el.error, s.error);
    setText(el.who, signedIn ? s.aor : '');

    el.signin.hidden = signedIn;
    el.phone.hidden = !signedIn;
    el.history.hidden = !signedIn;

    el.incoming.hidden = !ringing;
    setText(el.incomingFrom, ringing ? s.peer : '');
    el.answer.setAttribute('aria-label', ringing ? `Answer call from ${s.peer}` : 'Answer');
    el.decline.setAttribute('aria-label', ringing ? `Decline call from ${s.peer}` : 'Decline');
    el.answer.disabled = s.call !== 'incoming';

    el.incall.hidden = !inCall || ringing;
    setText(el.callPeer, inCall && !ringing ? s.peer : '');
    let callLabel = CALL_LABEL[s.call] || '';
    if (s.call === 'active' && s.held) callLabel = 'On hold';
    else if (s.call === 'active' && s.remoteHeld) callLabel = 'Held by the other side';
    setText(el.callState, callLabel);
    el.mute.disabled = el.hold.disabled = s.call !== 'active';
    el.transfer.disabled = el.transferTarget.disabled = el.consult.disabled = s.call !== 'active' || s.transfer === 'trying';
    el.waiting.hidden = !s.waiting;
    setText(el.waitingFrom, s.waiting || '');
    el.answerWaiting.setAttribute('aria-label', s.waiting ? `Answer ${s.waiting} and hold the current call` : 'Answer the waiting call');
    el.declineWaiting.setAttribute('aria-label', s.waiting ? `Decline ${s.waiting}` : 'Decline the waiting call');
    renderHeld(s, prev);
    if (!inCall) el.transferTarget.value = '';
    el.mute.setAttribute('aria-pressed', String(s.muted));
    el.hold.setAttribute('aria-pressed', String(s.held));
    if (s.call === 'active' && s.answeredAt) startTimer(s.answeredAt);
    else stopTimer();
    if (prev.call === 'idle' || prev.call === undefined) setText(el.tones, '');

    renderVideo(s, inCall && !ringing);

    el.number.readOnly = inCall;
    el.backspace.disabled = inCall;
    el.call.hidden = inCall;
    el.keypad.setAttribute('aria-label', s.call === 'active' ? 'Dial pad, sends tones' : 'Dial pad');

    doc.title = s.call === 'incoming' ? `Incoming call – ${baseTitle}` : baseTitle;

    // Keep the keyboard focus somewhere useful when its control goes away,
    // and offer Answer when a call comes in.
    const active = doc.activeElement;
    if (s.call === 'incoming' && prev.call !== 'incoming') {
      el.answer.focus();
    } else if (!focusable(active)) {
      if (!signedIn) (el.user.value ? el.password : el.user).focus();
      else if (inCall && !ringing) el.hangup.focus();
      else if (!inCall) el.number.focus();
    }
    if (!signedIn && s.error && prev.error !== s.error) {
      // Refused sign-in: straight back to the field to fix.
      const field = el.user.value ? el.password : el.user;
      field.focus();
      field.select();
    }
    if (signedIn) el.password.value = ''; // handed to JsSIP; not kept in the page
  }

  function renderHistory(entries) {
    el.historyList.replaceChildren(
      ...entries.map((e) => {
        const li = doc.createElement('li');
        const b = doc.createElement('button');
        b.type = 'button';
        b.dataset.target = e.target || e.peer;
        const dir = e.direction === 'in' ? 'Incoming' : 'Outgoing';
        const outcome = OUTCOME_LABEL[e.outcome] ?? '';
        const when = formatWhen(e.startedAt);
        const meta = [dir, outcome, e.outcome === 'answered' ? formatDuration(e.duration) : '', when]
          .filter(Boolean)
          .join(' · ');
        if (e.outcome !== 'answered') b.classList.add('h-bad');
        const peer = doc.createElement('span');
        peer.className = 'h-peer';
        peer.textContent = `${e.direction === 'in' ? '↙' : '↗'} ${e.peer}`;
        const m = doc.createElement('span');
        m.className = 'h-meta';
        m.textContent = meta;
        b.append(peer, m);
        b.setAttribute('aria-label', `Call ${e.peer} again. ${meta}`);
        li.append(b);
        return li;
      }),
    );
    el.historyEmpty.hidden = entries.length > 0;
    el.historyClear.hidden = entries.length === 0;
  }

  return {
    render,
    // setReady enables signing in: until the script runs, the form must
    // not be submitted the browser's way (with the password in the URL).
    setReady() {
      el.signinButton.disabled = false;
    },
    renderHistory,
    setUser(user) {
      el.user.value = user || '';
    },
    appendDigit(d) {
      if (!el.number.readOnly) el.number.value += d;
    },
    appendTone(d) {
      el.tones.textContent += d;
    },
    flashKey,
    setLevel(v) {
      el.level.value = v;
    },
    setMicTesting(on) {
      el.micTest.setAttribute('aria-pressed', String(on));
    },
    setRemoteStream(stream) {
      if (el.remoteAudio.srcObject !== stream) el.remoteAudio.srcObject = stream;
      if (stream) el.remoteAudio.play().catch(() => {});
    },
    setRemoteVideo(stream) {
      if (el.remoteVideo.srcObject !== stream) el.remoteVideo.srcObject = stream;
      if (stream) el.remoteVideo.play().catch(() => {});
    },
    setLocalVideo(stream) {
      if (el.localVideo.srcObject !== stream) el.localVideo.srcObject = stream;
      if (stream) el.localVideo.play().catch(() => {});
    },
    setNumber(v) {
      el.number.value = v;
    },
    focusNumber() {
      el.number.focus();
    },
  };
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function formatWhen(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`;
}
