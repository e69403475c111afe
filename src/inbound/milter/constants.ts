/**
 * Sendmail milter protocol version 6 constants, as libmilter's mfdef.h defines them and
 * Postfix's milter8.c uses them: one-letter command and reply codes, the action flags a milter
 * asks for (SMFIF_*), the protocol flags that switch events and replies off (SMFIP_*) and the
 * stages of macro lists (SMFIM_*).
 */

export const MILTER_VERSION = 6;

/** The largest body chunk a SMFIC_BODY carries (mfdef.h MILTER_CHUNK_SIZE). */
export const BODY_CHUNK_SIZE = 65535;

/** Commands the MTA sends (SMFIC_*). */
export const Cmd = {
  ABORT: 'A',
  BODY: 'B',
  CONNECT: 'C',
  MACRO: 'D',
  BODYEOB: 'E',
  HELO: 'H',
  QUIT_NC: 'K',
  HEADER: 'L',
  MAIL: 'M',
  EOH: 'N',
  OPTNEG: 'O',
  QUIT: 'Q',
  RCPT: 'R',
  DATA: 'T',
  UNKNOWN: 'U',
} as const;

/** Replies a milter sends (SMFIR_*). */
export const Reply = {
  ADDRCPT: '+',
  DELRCPT: '-',
  ADDRCPT_PAR: '2',
  SHUTDOWN: '4',
  ACCEPT: 'a',
  REPLBODY: 'b',
  CONTINUE: 'c',
  DISCARD: 'd',
  CHGFROM: 'e',
  CONN_FAIL: 'f',
  ADDHEADER: 'h',
  INSHEADER: 'i',
  SETSYMLIST: 'l',
  CHGHEADER: 'm',
  PROGRESS: 'p',
  QUARANTINE: 'q',
  REJECT: 'r',
  SKIP: 's',
  TEMPFAIL: 't',
  REPLYCODE: 'y',
  OPTNEG: 'O',
} as const;

/** Actions a milter may take at end of message (SMFIF_*). */
export const Action = {
  ADDHDRS: 0x001,
  CHGBODY: 0x002,
  ADDRCPT: 0x004,
  DELRCPT: 0x008,
  CHGHDRS: 0x010,
  QUARANTINE: 0x020,
  CHGFROM: 0x040,
  ADDRCPT_PAR: 0x080,
  SETSYMLIST: 0x100,
} as const;

/** Everything this client can apply. */
export const OFFERED_ACTIONS = 0x1ff;

/** Protocol flags (SMFIP_*): NO* leaves an event out, NR_* means the milter sends no reply to it. */
export const Proto = {
  NOCONNECT: 0x1,
  NOHELO: 0x2,
  NOMAIL: 0x4,
  NORCPT: 0x8,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NOUNKNOWN: 0x100,
  NODATA: 0x200,
  SKIP: 0x400,
  RCPT_REJ: 0x800,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_MAIL: 0x4000,
  NR_RCPT: 0x8000,
  NR_DATA: 0x10000,
  NR_UNKN: 0x20000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
  HDR_LEADSPC: 0x100000,
} as const;

/**
 * The protocol flags offered: every NO*, NR_* and SKIP, and HDR_LEADSPC. Not RCPT_REJ: the
 * checks run after DATA, when the refused recipients are long gone.
 */
export const OFFERED_PROTOCOL = 0x1fffff & ~Proto.RCPT_REJ;

/** Macro list stages in an OPTNEG reply (SMFIM_*), and the command each list goes with. */
export const MacroStage = {
  CONNECT: 0,
  HELO: 1,
  ENVFROM: 2,
  ENVRCPT: 3,
  DATA: 4,
  EOM: 5,
  EOH: 6,
} as const;
export type MacroStage = (typeof MacroStage)[keyof typeof MacroStage];

export const STAGE_COMMAND: Record<MacroStage, string> = {
  0: Cmd.CONNECT,
  1: Cmd.HELO,
  2: Cmd.MAIL,
  3: Cmd.RCPT,
  4: Cmd.DATA,
  5: Cmd.BODYEOB,
  6: Cmd.EOH,
};
