/**
 * A test server whose outbound queue reaches a test SMTP sink on loopback through the
 * directory's transport table, with an injected clock the tests move forward.
 */
import { simpleParser } from 'mailparser';
import { startSmtpSink, type SmtpSink } from './smtp-sink.js';
import { DEMO_DIRECTORY, startTestServer, type TestServer } from './server.js';
import { start as startProxy, type TcpProxy } from './tcp-proxy.js';

export function message(subject: string, extra = ''): Buffer {
  return Buffer.from(
    `From: Alice <alice@example.test>\r\nTo: someone@remote.example\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.test>\r\n${extra}\r\nHello from the queue test.\r\n`,
  );
}

export interface QueueEnv {
  server: TestServer;
  sink: SmtpSink;
  proxy: TcpProxy;
  clock: { offset: number };
}

/** A server whose transport table sends remote.example to the sink and refused.example through a proxy. */
export async function setup(
  config: Record<string, unknown> = {},
  mailRoot?: string,
  reuse?: { sink: SmtpSink; proxy: TcpProxy },
): Promise<QueueEnv> {
  const sink = reuse?.sink ?? (await startSmtpSink());
  const proxy = reuse?.proxy ?? (await startProxy(sink.port));
  const clock = { offset: 0 };
  const directory = `${DEMO_DIRECTORY}
transports:
  remote.example: "smtp:[127.0.0.1]:${sink.port}"
  other.example: "[127.0.0.1]:${sink.port}"
  refused.example: "[127.0.0.1]:${proxy.port}"
`;
  let server: TestServer;
  try {
    server = await startTestServer({
      directory,
      config: { queue: { connect_timeout: '5s', command_timeout: '10s', ...config } },
      now: () => Date.now() + clock.offset,
      ...(mailRoot ? { mailRoot } : {}),
    });
  } catch (err) {
    if (!reuse) {
      await proxy.close();
      await sink.close();
    }
    throw err;
  }
  return { server, sink, proxy, clock };
}

export async function teardown(env: QueueEnv): Promise<void> {
  await env.server.stop();
  await env.proxy.close();
  await env.sink.close();
}

/** The queue's state once no round is running. */
export async function settled(env: QueueEnv) {
  await env.server.runtime.queue.idle();
  return env.server.runtime.queue.list();
}

export async function reportsIn(server: TestServer, mailbox: string) {
  const raw = await server.read(mailbox);
  return Promise.all(raw.map((r) => simpleParser(Buffer.from(r, 'latin1'))));
}
