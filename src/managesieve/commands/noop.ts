import { ANY, type ManageSieveCommand } from '../command.js';
import { ParseError, textArg } from '../parser.js';
import { sieveString } from '../writer.js';

/** NOOP (RFC 5804 section 2.13): OK, with (TAG string) when the client gave one. */
export const noop: ManageSieveCommand = {
  name: 'NOOP',
  states: ANY,
  async run(session, args) {
    if (args.length > 1) throw new ParseError('Too many arguments');
    if (args.length === 0) return session.writer.ok('NOOP completed.');
    session.writer.ok('Done', `TAG ${sieveString(textArg(args, 0, 'tag'))}`);
  },
};
