import { ANY, type ImapCommand } from '../command.js';
import { ParseError, isNil } from '../parser.js';

/** ID (RFC 2971): the client's identification goes to the log; ours is minimal. */
export const id: ImapCommand = {
  name: 'ID',
  states: ANY,
  async run(session, command) {
    const arg = command.args[0];
    if (!arg || command.args.length > 1 || (!isNil(arg) && arg.type !== 'list')) throw new ParseError('ID takes a parameter list or NIL');
    if (arg.type === 'list') {
      if (arg.items.length > 60 || arg.items.length % 2 !== 0) throw new ParseError('invalid ID parameter list');
      const fields: Record<string, string> = {};
      for (let i = 0; i < arg.items.length; i += 2) {
        const k = arg.items[i]!;
        const v = arg.items[i + 1]!;
        if (k.type !== 'string' || (v.type !== 'string' && !isNil(v))) throw new ParseError('invalid ID parameter list');
        fields[k.value.toString('utf8').slice(0, 30)] = v.type === 'string' ? v.value.toString('utf8').slice(0, 1024) : '';
      }
      session.log.info({ client: fields }, 'client id');
    }
    session.writer.untagged('ID ("name" "maild")');
  },
};
