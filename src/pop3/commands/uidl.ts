import { TRANSACTION, parseNumber, splitArgs, type Pop3Command } from '../command.js';
import { Pop3Error } from '../errors.js';

/**
 * UIDL [msg] (RFC 1939 section 7): "number unique-id", the unique-id being Dovecot's default
 * %08Xu%08Xv (UID and UIDVALIDITY as 8 hex digits each, lower case as Dovecot writes them),
 * stable for as long as the message exists.
 */
export const uidl: Pop3Command = {
  name: 'UIDL',
  states: TRANSACTION,
  async run(session, args) {
    const drop = session.maildrop!;
    const parts = splitArgs(args);
    if (parts.length > 1) throw new Pop3Error('UIDL takes at most one argument.');
    if (parts.length === 1) {
      const m = drop.message(parseNumber(parts[0], 'message number'));
      session.writer.ok(`${m.number} ${drop.uidl(m)}`);
      return;
    }
    session.writer.ok();
    await session.writer.lines(
      (function* () {
        for (const m of drop.messages) if (!m.deleted) yield `${m.number} ${drop.uidl(m)}`;
      })(),
    );
  },
};
