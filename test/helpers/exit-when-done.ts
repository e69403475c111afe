/**
 * Preloaded into every test file (package.json's test command): once the file's tests are done,
 * a handle a failed test left open (a daemon it never stopped, a server it never closed) may
 * keep the process, and with it the whole run, waiting for ever. Ten seconds after the last
 * test the process ends all the same. This replaces `--test-force-exit`, which on Node 22 and
 * 24 ends a file before its later suites have run and reports the rest as passed.
 */
import { after } from 'node:test';

after(() => {
  setTimeout(() => process.exit(), 10_000).unref();
});
