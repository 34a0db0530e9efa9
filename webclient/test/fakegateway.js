// A stand-in for the gateway's SIP-over-WebSocket side, good enough for two
// softphone pages to register and call each other on loopback before the
// real gateway is wired: a registrar with digest authentication and a
// stateless relay between WebSocket connections. It is a test double, not a
// SIP implementation: no transactions, no retransmissions, no Via of its
// own. Requests go to the connection of the Request-URI's user (an AOR user
// or a Contact user); responses go back to the connection the request with
// the same Via branch came from.
//
// Users named in `responses` get that final response instead of a call
// (e.g. { busy: 486, gone: 404 }); unknown users get 404.

import { createHash, randomBytes } from 'node:crypto';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_FRAME = 256 * 1024;

export function createFakeGateway({ users = {}, realm = 'sip.example.test', responses = {} } = {}) {
  const byUser = new Map(); // AOR user or Contact user → connection
  const branches = new Map(); // Via branch → connection the request came from
  const conns = new Set();
  const log = []; // "alice → REGISTER", "bob ← 486 Busy Here", …

  function onUpgrade(req, socket) {
    const key = req.headers['sec-websocket-key'];
    const protocols = String(req.headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim());
    if (new URL(req.url, 'http://x').pathname !== '/ws' || !key || !protocols.includes('sip')) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: sip\r\n\r\n`,
    );
    const conn = { socket, users: new Set(), send: (text) => sendFrame(socket, 0x1, Buffer.from(text)) };
    conns.add(conn);
    readFrames(socket, (text) => onMessage(conn, text), () => drop(conn));
  }

  function drop(conn) {
    conns.delete(conn);
    for (const u of conn.users) if (byUser.get(u) === conn) byUser.delete(u);
    conn.socket.destroy();
  }

  function onMessage(conn, text) {
    const msg = parseSIP(text);
    if (!msg) return;
    if (msg.status) {
      const target = branches.get(msg.branch);
      log.push(`${msg.status} ${msg.reason} (${msg.cseqMethod})`);
      if (target && conns.has(target)) target.send(text);
      return;
    }
    log.push(`${msg.method} ${msg.ruriUser}`);
    if (msg.method === 'REGISTER') return register(conn, msg);
    if (msg.method !== 'ACK') branches.set(msg.branch, conn);
    if (msg.method === 'INVITE' && responses[msg.ruriUser]) {
      const code = responses[msg.ruriUser];
      conn.send(reply(msg, code, REASONS[code] || 'Failed', [`To: ${msg.headers.to};tag=${token()}`]));
      return;
    }
    const target = byUser.get(msg.ruriUser);
    if (!target || !conns.has(target)) {
      if (msg.method !== 'ACK') conn.send(reply(msg, 404, 'Not Found', [`To: ${msg.headers.to};tag=${token()}`]));
      return;
    }
    target.send(text);
  }

  function register(conn, msg) {
    const user = msg.fromUser;
    const auth = msg.headers.authorization;
    const nonce = token();
    const challenge = () =>
      conn.send(reply(msg, 401, 'Unauthorized', [
        `To: ${msg.headers.to};tag=${token()}`,
        `WWW-Authenticate: Digest realm="${realm}", nonce="${nonce}", qop="auth", algorithm=MD5`,
      ]));
    if (!auth) return challenge();
    if (!(user in users) || !digestOK(auth, 'REGISTER', users[user])) {
      return conn.send(reply(msg, 403, 'Forbidden', [`To: ${msg.headers.to};tag=${token()}`]));
    }
    const contact = msg.headers.contact || '';
    const contactUser = (contact.match(/<sips?:([^@>;]+)@/) || [])[1];
    const expires = /expires=0\b/.test(contact) || msg.headers.expires === '0' ? 0 : 600;
    for (const u of [user, contactUser]) {
      if (!u) continue;
      if (expires) {
        byUser.set(u, conn);
        conn.users.add(u);
      } else if (byUser.get(u) === conn) {
        byUser.delete(u);
      }
    }
    const contactOut = contact.replace(/;expires=\d+/, '') + `;expires=${expires}`;
    conn.send(reply(msg, 200, 'OK', [`To: ${msg.headers.to};tag=${token()}`, `Contact: ${contactOut}`]));
  }

  function digestOK(header, method, password) {
    const p = {};
    for (const m of header.matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]+))/g)) p[m[1]] = m[2] ?? m[3];
    const md5 = (s) => createHash('md5').update(s).digest('hex');
    const ha1 = md5(`${p.username}:${p.realm}:${password}`);
    const ha2 = md5(`${method}:${p.uri}`);
    const want = p.qop
      ? md5(`${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:${p.qop}:${ha2}`)
      : md5(`${ha1}:${p.nonce}:${ha2}`);
    return p.realm === realm && p.response === want;
  }

  return {
    onUpgrade,
    log,
    registered: (user) => byUser.has(user),
    // dropAll closes every connection, as a gateway restart would.
    dropAll() {
      for (const c of [...conns]) drop(c);
    },
    close() {
      for (const c of [...conns]) drop(c);
    },
  };
}

const REASONS = { 404: 'Not Found', 480: 'Temporarily Unavailable', 486: 'Busy Here', 603: 'Decline', 604: 'Does Not Exist Anywhere', 600: 'Busy Everywhere' };

function token() {
  return randomBytes(6).toString('hex');
}

// parseSIP reads what the relay needs of a message.
function parseSIP(text) {
  const end = text.indexOf('\r\n\r\n');
  const head = end >= 0 ? text.slice(0, end) : text;
  const lines = head.split('\r\n');
  const first = lines.shift() || '';
  const headers = {};
  const raw = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    (raw[name] ||= []).push(value);
    headers[name] ??= value; // the first one: top Via
  }
  const via = headers.via || headers.v || '';
  const branch = (via.match(/branch=([^;,\s]+)/) || [])[1] || '';
  const cseq = headers.cseq || '';
  const msg = { headers, raw, branch, cseqMethod: cseq.split(/\s+/)[1] || '' };
  const status = first.match(/^SIP\/2\.0 (\d{3}) (.*)$/);
  if (status) return { ...msg, status: Number(status[1]), reason: status[2] };
  const req = first.match(/^([A-Z]+) (\S+) SIP\/2\.0$/);
  if (!req) return null;
  const user = (uri) => decodeURIComponent((String(uri).match(/sips?:([^@;>]+)@/) || [])[1] || '');
  return { ...msg, method: req[1], ruriUser: user(req[2]), fromUser: user(headers.from || '') };
}

// reply builds a response to msg that copies Via, From, Call-ID and CSeq;
// extra holds the To (with a tag) and anything else.
function reply(msg, code, reason, extra) {
  const lines = [`SIP/2.0 ${code} ${reason}`];
  for (const v of msg.raw.via || []) lines.push(`Via: ${v}`);
  lines.push(`From: ${msg.headers.from}`, `Call-ID: ${msg.headers['call-id']}`, `CSeq: ${msg.headers.cseq}`);
  lines.push(...extra, 'Content-Length: 0', '', '');
  return lines.join('\r\n');
}

// ---- WebSocket framing (RFC 6455), server side -------------------------

function sendFrame(socket, opcode, payload) {
  if (socket.destroyed) return;
  const len = payload.length;
  let header;
  if (len < 126) {
    header = Buffer.from([0x80 | opcode, len]);
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  socket.write(Buffer.concat([header, payload]));
}

function readFrames(socket, onText, onClose) {
  let buf = Buffer.alloc(0);
  let fragments = [];
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      const fin = (buf[0] & 0x80) !== 0;
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (len > MAX_FRAME || !masked) {
        onClose();
        return;
      }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      buf = buf.subarray(off + 4 + len);
      if (opcode === 0x8) {
        sendFrame(socket, 0x8, Buffer.alloc(0));
        onClose();
        return;
      }
      if (opcode === 0x9) {
        sendFrame(socket, 0xa, payload);
        continue;
      }
      if (opcode === 0x1 || opcode === 0x0) {
        fragments.push(payload);
        if (fin) {
          onText(Buffer.concat(fragments).toString('utf8'));
          fragments = [];
        }
      }
    }
  });
  socket.on('close', onClose);
  socket.on('error', onClose);
}
