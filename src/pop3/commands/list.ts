import { TRANSACTION, parseNumber, splitArgs, type Pop3Command } from '../command.js';
import { Pop3Error } from '../errors.js';

/** LIST [msg] (RFC 1939 section 5): "number size" scan listings, without deleted messages. */
export const list: Pop3Command = {
  name: 'LIST',
  states: TRANSACTION,
  async run(session, args) {
    const drop = session.maildrop!;
    const parts = splitArgs(args);
    if (parts.length > 1) throw new Pop3Error('LIST takes at most one argument.');
    if (parts.length === 1) {
      const m = drop.message(parseNumber(parts[0], 'message number'));
      session.writer.ok(`${m.number} ${m.size}`);
      return;
    }
    session.writer.ok(`${drop.totals().count} messages:`);
    await session.writer.lines(
      (function* () {
        for (const m of drop.messages) if (!m.deleted) yield `${m.number} ${m.size}`;
      })(),
    );
  },
};
