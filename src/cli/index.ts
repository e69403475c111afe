#!/usr/bin/env node
/**
 * The maild command line: `maild serve` runs the daemon; the other commands administer the
 * directory of the configured backend (file or MySQL). See `maild help`.
 * Only node built-ins are imported statically (see main.ts for why).
 */
process.env.UV_THREADPOOL_SIZE ??= '32';

const argv = process.argv.slice(2);
if (argv[0] === 'serve') {
  const { runDaemon } = await import('../daemon.js');
  await runDaemon(argv.slice(1));
} else {
  const { runCli } = await import('./commands.js');
  process.exitCode = await runCli(argv, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
}
