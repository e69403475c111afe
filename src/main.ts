/**
 * The daemon's entry point: `node dist/src/main.js [--config PATH]` (npm start).
 * Only node built-ins are imported statically: libuv's thread pool size must be set before
 * anything uses the pool, and deliveries run many fsyncs on it at once.
 */
process.env.UV_THREADPOOL_SIZE ??= '32';

const { runDaemon } = await import('./daemon.js');
await runDaemon(process.argv.slice(2));
