import type { ImapCommand } from '../command.js';
import { ParseError } from '../parser.js';

/** ENABLE (RFC 5161): CONDSTORE and QRESYNC (which implies CONDSTORE, RFC 7162 section 3.2.3). */
export const enable: ImapCommand = {
  name: 'ENABLE',
  states: ['authenticated'],
  async run(session, command) {
    if (command.args.length === 0) throw new ParseError('ENABLE needs at least one capability');
    const now: string[] = [];
    for (const arg of command.args) {
      if (arg.type !== 'atom') throw new ParseError('capability expected');
      const cap = arg.value.toUpperCase();
      if (cap !== 'CONDSTORE' && cap !== 'QRESYNC') continue;
      for (const c of cap === 'QRESYNC' ? ['CONDSTORE', 'QRESYNC'] : ['CONDSTORE']) {
        if (!session.enabled.has(c)) {
          session.enabled.add(c);
          now.push(c);
        }
      }
      session.condstore = true;
    }
    session.writer.untagged(`ENABLED${now.length ? ` ${now.join(' ')}` : ''}`);
  },
};
