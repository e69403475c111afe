/**
 * The milter wire format (libmilter's mfdef.h and Postfix's milter8.c): every packet is a 32-bit
 * big-endian length, then a one-byte command, then length - 1 bytes of data; strings are
 * NUL-terminated, integers 32-bit (or 16-bit for the port) big-endian. This file encodes the
 * MTA's commands and decodes a milter's replies into typed values; a malformed reply is a
 * MilterProtocolError, never a crash.
 */
import { Cmd, MacroStage, Reply } from './constants.js';

/**
 * The largest reply frame accepted: a body replacement chunk of 1 MiB (SMFIP_MDS_1M, the largest
 * data size a milter may negotiate) plus the command byte. Anything longer is refused unread.
 */
export const MAX_FRAME = 1024 * 1024 + 1;

export type MilterProtocolErrorCode =
  /** A length prefix beyond MAX_FRAME. */
  | 'FRAME_TOO_LARGE'
  /** A length prefix of 0: no command byte. */
  | 'FRAME_EMPTY'
  /** The connection ended inside a frame. */
  | 'TRUNCATED'
  /** A reply whose data does not match its command (missing NUL, short integer, bad reply code). */
  | 'BAD_REPLY'
  /** A reply code unknown, or not allowed at this point of the conversation. */
  | 'UNEXPECTED_REPLY'
  /** Too many replies, edits or progress notes, or too large a body replacement. */
  | 'LIMIT_EXCEEDED';

export class MilterProtocolError extends Error {
  readonly code: MilterProtocolErrorCode;
  constructor(code: MilterProtocolErrorCode, message: string) {
    super(message);
    this.name = 'MilterProtocolError';
    this.code = code;
  }
}

export interface Frame {
  command: string;
  data: Buffer;
}

/** One packet: length (command byte included), command, data. */
export function encodeFrame(command: string, data: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(data.length + 1, 0);
  head.write(command, 4, 'latin1');
  return Buffer.concat([head, data]);
}

/** A NUL-terminated string: text as UTF-8, or bytes as they are (header values). */
const nulString = (s: string | Buffer) => Buffer.concat([typeof s === 'string' ? Buffer.from(s, 'utf8') : s, Buffer.from([0])]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};

export function encodeOptneg(version: number, actions: number, protocol: number): Buffer {
  return encodeFrame(Cmd.OPTNEG, Buffer.concat([u32(version), u32(actions), u32(protocol)]));
}

/** SMFIC_MACRO: the command the macros go with, then name/value pairs. */
export function encodeMacros(forCommand: string, macros: ReadonlyArray<[string, string]>): Buffer {
  return encodeFrame(
    Cmd.MACRO,
    Buffer.concat([Buffer.from(forCommand, 'latin1'), ...macros.flatMap(([n, v]) => [nulString(n), nulString(v)])]),
  );
}

/** SMFIC_CONNECT: host name, family ('4', '6', 'L' unix, 'U' unknown), port, address. */
export function encodeConnect(hostname: string, family: '4' | '6' | 'L' | 'U', port: number, address: string): Buffer {
  if (family === 'U') return encodeFrame(Cmd.CONNECT, Buffer.concat([nulString(hostname), Buffer.from('U')]));
  const portBytes = Buffer.alloc(2);
  portBytes.writeUInt16BE(port & 0xffff, 0);
  return encodeFrame(Cmd.CONNECT, Buffer.concat([nulString(hostname), Buffer.from(family), portBytes, nulString(address)]));
}

/** A command whose data is a list of NUL-terminated strings (HELO, MAIL, RCPT, HEADER). */
export function encodeStrings(command: string, strings: ReadonlyArray<string | Buffer>): Buffer {
  return encodeFrame(command, Buffer.concat(strings.map(nulString)));
}

/**
 * Splits a byte stream into frames. push() returns the complete frames so far and keeps the
 * rest; end() throws TRUNCATED when the stream stopped inside a frame.
 */
export class FrameDecoder {
  private pending: Buffer = Buffer.alloc(0);
  constructor(private readonly maxFrame = MAX_FRAME) {}

  push(chunk: Buffer): Frame[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const frames: Frame[] = [];
    while (this.pending.length >= 4) {
      const length = this.pending.readUInt32BE(0);
      if (length === 0) throw new MilterProtocolError('FRAME_EMPTY', 'milter sent a frame of length 0');
      if (length > this.maxFrame)
        throw new MilterProtocolError('FRAME_TOO_LARGE', `milter sent a frame of ${length} bytes (limit ${this.maxFrame})`);
      if (this.pending.length < 4 + length) break;
      frames.push({ command: String.fromCharCode(this.pending[4]!), data: this.pending.subarray(5, 4 + length) });
      this.pending = this.pending.subarray(4 + length);
    }
    return frames;
  }

  end(): void {
    if (this.pending.length)
      throw new MilterProtocolError('TRUNCATED', `connection closed inside a frame (${this.pending.length} bytes pending)`);
  }
}

/** A validated reply: the milter's own SMTP reply (SMFIR_REPLYCODE). */
export interface SmtpReply {
  code: number;
  enhanced: string;
  text: string;
}

export type MilterReply =
  | { type: 'accept' | 'continue' | 'discard' | 'reject' | 'tempfail' | 'progress' | 'skip' | 'shutdown' | 'connfail' }
  | { type: 'replycode'; reply: SmtpReply }
  | { type: 'quarantine'; reason: string }
  | { type: 'addheader'; name: string; value: string }
  | { type: 'insheader'; index: number; name: string; value: string }
  | { type: 'chgheader'; index: number; name: string; value: string }
  | { type: 'replbody'; chunk: Buffer }
  | { type: 'addrcpt'; recipient: string; args?: string }
  | { type: 'delrcpt'; recipient: string }
  | { type: 'chgfrom'; sender: string; args?: string }
  | { type: 'optneg'; version: number; actions: number; protocol: number; macros: Map<MacroStage, string> };

/** Reads NUL-terminated strings and integers from a reply's data, failing with BAD_REPLY. */
class DataReader {
  private pos = 0;
  constructor(
    private readonly data: Buffer,
    private readonly what: string,
  ) {}
  get remaining(): number {
    return this.data.length - this.pos;
  }
  u32(): number {
    if (this.remaining < 4) throw this.bad('a 32-bit integer is cut short');
    const n = this.data.readUInt32BE(this.pos);
    this.pos += 4;
    return n;
  }
  /** Header fields are read as latin1, one char per byte, so that 8-bit bytes go back unchanged. */
  string(encoding: 'utf8' | 'latin1' = 'utf8'): string {
    const nul = this.data.indexOf(0, this.pos);
    if (nul === -1) throw this.bad('a string lacks its NUL terminator');
    const s = this.data.toString(encoding, this.pos, nul);
    this.pos = nul + 1;
    return s;
  }
  optionalString(): string | undefined {
    return this.remaining > 0 ? this.string() : undefined;
  }
  done(): void {
    if (this.remaining > 0) throw this.bad(`${this.remaining} bytes of trailing data`);
  }
  bad(why: string): MilterProtocolError {
    return new MilterProtocolError('BAD_REPLY', `milter reply ${this.what}: ${why}`);
  }
}

const HEADER_NAME = /^[!-9;-~]+$/;
/** No NUL (cannot occur), no bare CR; LF only as folding (followed by a space or tab). */
const HEADER_VALUE = /^(?:[^\r\n]|\r?\n(?=[ \t]))*$/;
const ADDRESS = /^[^\r\n\0]*$/;

function headerField(r: DataReader): { name: string; value: string } {
  const name = r.string('latin1');
  const value = r.string('latin1');
  r.done();
  if (!HEADER_NAME.test(name)) throw r.bad(`bad header name ${JSON.stringify(name.slice(0, 80))}`);
  if (!HEADER_VALUE.test(value)) throw r.bad(`bad header value for ${name}`);
  return { name, value };
}

function address(r: DataReader, s: string): string {
  if (!ADDRESS.test(s) || s.length > 1000) throw r.bad('bad address');
  return s;
}

/**
 * Validates a milter's SMTP reply the way Sendmail's MILTER_CHECK_REPLYCODE does: 4xx or 5xx,
 * three digits, then a space or '-' (multi-line); an RFC 3463 enhanced code of the same class
 * is kept, else x.7.1 stands in. Lines of a multi-line reply are joined with a space.
 */
export function parseSmtpReply(raw: string): SmtpReply | undefined {
  const lines = raw.replace(/\r?\n$/, '').split(/\r?\n/);
  let code: number | undefined;
  let enhanced: string | undefined;
  const texts: string[] = [];
  for (const [i, line] of lines.entries()) {
    const m = /^([45][0-9][0-9])(?:([ -])(.*))?$/.exec(line);
    if (!m) return undefined;
    const lineCode = Number(m[1]);
    if (code !== undefined && lineCode !== code) return undefined;
    code = lineCode;
    // Every line but the last continues with '-'; the last has ' ' or nothing.
    if (i < lines.length - 1 !== (m[2] === '-')) return undefined;
    let text = m[3] ?? '';
    const e = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)(.*)$/.exec(text);
    if (e) {
      enhanced ??= e[1];
      text = e[2]!;
    }
    if (!/^[\x20-\x7e]*$/.test(text)) return undefined;
    texts.push(text);
  }
  if (code === undefined) return undefined;
  const cls = String(code)[0]!;
  if (!enhanced || enhanced[0] !== cls) enhanced = `${cls}.7.1`;
  return { code, enhanced, text: texts.join(' ').trim() || (cls === '4' ? 'Service unavailable, try again later' : 'Message rejected') };
}

/** Decodes one reply frame; unknown codes and malformed data are MilterProtocolErrors. */
export function decodeReply(frame: Frame): MilterReply {
  const r = new DataReader(frame.data, `'${frame.command}'`);
  const bare = (
    type: 'accept' | 'continue' | 'discard' | 'reject' | 'tempfail' | 'progress' | 'skip' | 'shutdown' | 'connfail',
  ): MilterReply => {
    r.done();
    return { type };
  };
  switch (frame.command) {
    case Reply.ACCEPT:
      return bare('accept');
    case Reply.CONTINUE:
      return bare('continue');
    case Reply.DISCARD:
      return bare('discard');
    case Reply.REJECT:
      return bare('reject');
    case Reply.TEMPFAIL:
      return bare('tempfail');
    case Reply.PROGRESS:
      return bare('progress');
    case Reply.SKIP:
      return bare('skip');
    case Reply.SHUTDOWN:
      return bare('shutdown');
    case Reply.CONN_FAIL:
      return bare('connfail');
    case Reply.REPLYCODE: {
      const raw = r.string();
      r.done();
      const reply = parseSmtpReply(raw);
      if (!reply) throw r.bad(`not a 4xx/5xx SMTP reply: ${JSON.stringify(raw.slice(0, 80))}`);
      return { type: 'replycode', reply };
    }
    case Reply.QUARANTINE: {
      const reason = r.string();
      r.done();
      return { type: 'quarantine', reason: reason.replace(/[^\x20-\x7e]/g, ' ').slice(0, 200) };
    }
    case Reply.ADDHEADER:
      return { type: 'addheader', ...headerField(r) };
    case Reply.INSHEADER: {
      const index = r.u32();
      return { type: 'insheader', index, ...headerField(r) };
    }
    case Reply.CHGHEADER: {
      const index = r.u32();
      return { type: 'chgheader', index, ...headerField(r) };
    }
    case Reply.REPLBODY:
      return { type: 'replbody', chunk: Buffer.from(frame.data) };
    case Reply.ADDRCPT: {
      const recipient = address(r, r.string());
      r.done();
      return { type: 'addrcpt', recipient };
    }
    case Reply.ADDRCPT_PAR: {
      const recipient = address(r, r.string());
      const args = r.optionalString();
      r.done();
      return { type: 'addrcpt', recipient, args: args === undefined ? undefined : address(r, args) };
    }
    case Reply.DELRCPT: {
      const recipient = address(r, r.string());
      r.done();
      return { type: 'delrcpt', recipient };
    }
    case Reply.CHGFROM: {
      const sender = address(r, r.string());
      const args = r.optionalString();
      r.done();
      return { type: 'chgfrom', sender, args: args === undefined ? undefined : address(r, args) };
    }
    case Reply.OPTNEG: {
      const version = r.u32();
      const actions = r.u32();
      const protocol = r.u32();
      // Version 6: optional (stage, "macro names") pairs override the MTA's macro lists.
      const macros = new Map<MacroStage, string>();
      while (r.remaining > 0) {
        const stage = r.u32();
        const names = r.string();
        if (stage <= 6) macros.set(stage as MacroStage, names);
      }
      return { type: 'optneg', version, actions, protocol, macros };
    }
    default:
      throw new MilterProtocolError('UNEXPECTED_REPLY', `unknown milter reply code 0x${frame.command.charCodeAt(0).toString(16)}`);
  }
}
