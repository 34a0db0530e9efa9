// Plain-word texts for everything the softphone tells its user. No DOM and
// no JsSIP here, so the wording can be tested in Node.

// JsSIP's cause strings (JsSIP.C.causes), repeated so that this module does
// not need JsSIP.
export const Cause = Object.freeze({
  CONNECTION_ERROR: 'Connection Error',
  REQUEST_TIMEOUT: 'Request Timeout',
  SIP_FAILURE_CODE: 'SIP Failure Code',
  BUSY: 'Busy',
  REJECTED: 'Rejected',
  REDIRECTED: 'Redirected',
  UNAVAILABLE: 'Unavailable',
  NOT_FOUND: 'Not Found',
  ADDRESS_INCOMPLETE: 'Address Incomplete',
  INCOMPATIBLE_SDP: 'Incompatible SDP',
  MISSING_SDP: 'Missing SDP',
  AUTHENTICATION_ERROR: 'Authentication Error',
  BYE: 'Terminated',
  WEBRTC_ERROR: 'WebRTC Error',
  CANCELED: 'Canceled',
  NO_ANSWER: 'No Answer',
  USER_DENIED_MEDIA_ACCESS: 'User Denied Media Access',
  BAD_MEDIA_DESCRIPTION: 'Bad Media Description',
  RTP_TIMEOUT: 'RTP Timeout',
});

export const text = Object.freeze({
  signedOut: 'Signed out.',
  connecting: 'Connecting to the gateway…',
  registering: 'Signing in…',
  registered: (aor) => `Ready. Signed in as ${aor}.`,
  connectionLost: 'Connection to the gateway lost. Reconnecting…',
  cannotConnect: 'Cannot connect to the gateway. Trying again…',
  wrongPassword: 'Wrong user name or password.',
  missingCredentials: 'Enter your user name and password.',
  badUser: (user) => `“${user}” is not a valid user name.`,
  registerFailed: (code, reason) =>
    `Sign-in failed (${[code, reason].filter(Boolean).join(' ')}). Trying again in 30 seconds.`,
  registerTimeout: 'The gateway did not answer the sign-in. Trying again in 30 seconds.',
  notConnected: 'Not connected to the gateway yet. Wait until the phone says it is ready.',
  noTarget: 'Enter a number or SIP address to call.',
  badTarget: (t) => `“${t}” is not a number or SIP address that can be called.`,
  busyElsewhere: 'Hang up the current call first.',
  calling: (peer) => `Calling ${peer}…`,
  ringing: (peer) => `${peer} is ringing…`,
  incoming: (peer) => `Incoming call from ${peer}.`,
  answering: 'Answering…',
  connected: (peer) => `In a call with ${peer}.`,
  onHold: (peer) => `${peer} is on hold.`,
  heldByRemote: (peer) => `${peer} put the call on hold.`,
  missedWhileBusy: (peer) => `Missed a call from ${peer} while in a call.`,
  noTransferTarget: 'Enter a number or SIP address to transfer the call to.',
  transferring: (peer, to) => `Transferring ${peer} to ${to}…`,
  transferCalling: (peer, to) => `${peer} is calling ${to}…`,
  transferRinging: (peer, to) => `${to} is ringing for ${peer}…`,
  transferred: (peer, to) => `${peer} was transferred to ${to}.`,
  transferRefused: (peer, to, code) =>
    `${peer} could not be transferred to ${to}${code ? ` (${transferReason(code)})` : ''}. You are still in the call.`,
  transferFailed: (peer, to, code) =>
    `${to} did not take the call${code ? ` (${transferReason(code)})` : ''}. You are still in the call with ${peer}.`,
  waiting: (peer) => `${peer} is calling. Answer to put the current call on hold.`,
  replaced: (peer) => `The call was transferred: now in a call with ${peer}.`,
  beingTransferred: (from, to) => `${from} is transferring you to ${to}. Calling ${to}…`,
  transferBack: (to, from, why) => `The transfer to ${to} failed: ${why} You are back in the call with ${from}.`,
  // Video: the words of the video live region, and its errors.
  videoOn: 'Video on.',
  videoOff: 'Video off.',
  videoNext: (on) => (on ? 'Video on for the next call.' : 'Video off for the next call.'),
  remoteVideoOn: (peer) => `${peer}'s video is on.`,
  remoteVideoOff: (peer) => `${peer}'s video is off.`,
  videoRefused: (peer) => `${peer} does not take video. The call goes on with sound only.`,
  videoBusy: 'Wait a moment: the call is being changed.',
});

// transferReason says in words why a transfer did not happen, from the
// status code of the REFER's answer or of the NOTIFY's sipfrag.
export function transferReason(code) {
  switch (Number(code)) {
    case 486:
    case 600:
      return 'busy';
    case 408:
    case 480:
      return 'no answer';
    case 403:
      return 'not allowed';
    case 404:
    case 604:
      return 'no such number or user';
    case 487:
      return 'cancelled';
    case 603:
      return 'declined';
    case 405:
    case 501:
      return 'the other side cannot be transferred';
    default:
      return `error ${code}`;
  }
}

// describeMediaError turns a getUserMedia failure into words.
export function describeMediaError(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return 'No microphone permission. Allow this page to use the microphone (see the icon in the address bar) and try again.';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return 'No microphone found. Connect one and try again.';
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return 'The microphone could not be started. Another app may be using it.';
    case 'InsecureContextError':
      return 'The browser allows the microphone only on secure pages: open the softphone over https:// (or on localhost).';
    default:
      return `The microphone could not be opened (${(err && (err.name || err.message)) || 'unknown error'}).`;
  }
}

// describeCameraError turns a getUserMedia failure for the camera into
// words; the call goes on (or starts) with sound only.
export function describeCameraError(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return 'No camera permission: sound only. Allow this page to use the camera (see the icon in the address bar) and turn video on again.';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return 'No camera found: sound only.';
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return 'The camera could not be started (another app may be using it): sound only.';
    default:
      return `The camera could not be opened (${(err && (err.name || err.message)) || 'unknown error'}): sound only.`;
  }
}

// describeEnd says how a call ended. event is JsSIP's 'ended' or 'failed'
// event ({ originator, cause, message }); call is { direction: 'in'|'out',
// peer, answered }. The outcome is what the call history records.
export function describeEnd(event, call) {
  const { originator, cause } = event;
  const msg = event.message || null;
  const code = msg && msg.status_code;
  const reason = msg && msg.reason_phrase;
  const peer = call.peer || 'The other side';

  if (call.answered) {
    switch (cause) {
      case Cause.BYE:
        return originator === 'remote'
          ? { outcome: 'answered', text: `${peer} hung up.` }
          : { outcome: 'answered', text: 'Call ended.' };
      case Cause.RTP_TIMEOUT:
        return { outcome: 'answered', text: 'The call was cut off: no audio arrived.', error: true };
      case Cause.CONNECTION_ERROR:
      case Cause.REQUEST_TIMEOUT:
        return {
          outcome: 'answered',
          text: 'The call was cut off: the connection to the gateway was lost.',
          error: true,
        };
      default:
        return { outcome: 'answered', text: 'Call ended.' };
    }
  }

  const fail = (outcome, words) => ({ outcome, text: words, error: true });
  if (call.direction === 'in') {
    if (originator === 'local') {
      if (cause === Cause.USER_DENIED_MEDIA_ACCESS) {
        return fail('failed', describeMediaError({ name: 'NotAllowedError' }));
      }
      return { outcome: 'declined', text: 'Call declined.' };
    }
    if (cause === Cause.CANCELED || cause === Cause.NO_ANSWER) {
      return { outcome: 'missed', text: `Missed call from ${peer}.` };
    }
  }
  switch (cause) {
    case Cause.CANCELED:
      return { outcome: 'cancelled', text: 'Call cancelled.' };
    case Cause.BUSY:
      return fail('busy', `${peer} is busy.`);
    case Cause.NOT_FOUND:
      return fail('failed', `${peer} was not found. Check the number or address.`);
    case Cause.REJECTED:
      return fail('failed', `${peer} refused the call.`);
    case Cause.UNAVAILABLE:
      return fail('failed', `${peer} is not available right now.`);
    case Cause.NO_ANSWER:
      return fail('failed', `${peer} did not answer.`);
    case Cause.ADDRESS_INCOMPLETE:
      return fail('failed', 'The number is incomplete.');
    case Cause.INCOMPATIBLE_SDP:
      return fail('failed', `${peer} cannot use any of this browser's audio formats.`);
    case Cause.AUTHENTICATION_ERROR:
      return fail('failed', 'The gateway did not accept your password for this call.');
    case Cause.REDIRECTED:
      return fail('failed', 'The call was redirected, which this softphone does not follow.');
    case Cause.USER_DENIED_MEDIA_ACCESS:
      return fail('failed', describeMediaError({ name: 'NotAllowedError' }));
    case Cause.CONNECTION_ERROR:
      return fail('failed', 'The connection to the gateway was lost.');
    case Cause.REQUEST_TIMEOUT:
      return fail('failed', 'The gateway did not answer.');
    case Cause.WEBRTC_ERROR:
    case Cause.BAD_MEDIA_DESCRIPTION:
    case Cause.MISSING_SDP:
      return fail('failed', 'The browser could not set up the audio for this call.');
    case Cause.SIP_FAILURE_CODE:
      return fail('failed', `The call failed (${[code, reason].filter(Boolean).join(' ') || 'no reason given'}).`);
    default:
      return fail('failed', `The call failed (${cause || 'no reason given'}).`);
  }
}
