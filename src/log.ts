import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * The root logger: JSON lines on stdout (journald and docker collect them as they are).
 * Sessions take a child logger carrying their connection id; passwords and AUTH lines
 * never reach a logger (the redact paths are a second line of defence).
 */
export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['password', '*.password', 'pass', '*.pass', 'config.directory.mysql.password'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A logger that discards everything, for the CLI and tests that do not look at logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
