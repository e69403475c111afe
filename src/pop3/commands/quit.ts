import { ANY, noArgs, type Pop3Command } from '../command.js';

/**
 * QUIT (RFC 1939 sections 4 and 6). In AUTHORIZATION it just ends the session; in TRANSACTION
 * the session enters UPDATE: the messages marked with DELE are removed (the only place where
 * anything is deleted), then the connection closes. If the removal fails the reply is -ERR and
 * the messages stay.
 */
export const quit: Pop3Command = {
  name: 'QUIT',
  states: ANY,
  async run(session, args) {
    noArgs('QUIT', args);
    const maildrop = session.maildrop;
    if (session.state !== 'transaction' || !maildrop) {
      session.writer.ok('Logging out.');
      session.close();
      return;
    }
    session.state = 'update';
    let reply: () => void;
    try {
      const removed = await maildrop.update();
      session.stats.deleted = removed;
      reply = () => session.writer.ok(removed > 0 ? 'Logging out, messages deleted.' : 'Logging out.');
    } catch (err) {
      session.log.error({ err }, 'pop3 update failed');
      reply = () => session.writer.err('Some deleted messages were not removed.', 'SYS/TEMP');
    }
    // The lock goes before the reply: a client that reconnects at once finds the mailbox free.
    session.maildrop = undefined;
    await maildrop.close().catch((err: unknown) => session.log.warn({ err: (err as Error).message }, 'releasing the maildrop failed'));
    reply();
    session.close();
    session.quitDone();
  },
};
