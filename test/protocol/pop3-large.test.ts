/**
 * RETR of a 50 MB message streams from the file: the client reads slowly (it stops now and then
 * so that the server's output backs up), and the server process's retained memory, measured
 * in-process after a forced GC at each stop, stays far below the message size. The bytes are
 * checked too: CRLF line ends, dot-stuffing, the announced size.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, it } from 'node:test';
import { pop3LoggedIn } from '../helpers/pop3-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const LINE = 'x'.repeat(75);
const LINES_PER_BLOCK = 13_000; // ~1 MB per block
const BLOCKS = 50;

/** Block i of the stored file (LF line ends), every 100th line starting with a dot. */
function block(i: number): Buffer {
  const lines: string[] = [];
  for (let l = 0; l < LINES_PER_BLOCK; l++) lines.push(l % 100 === 0 ? `.${i}${LINE}` : `${LINE}${l % 10}`);
  return Buffer.from(`${lines.join('\n')}\n`, 'latin1');
}

describe('POP3 RETR of a 50 MB message', () => {
  let srv: TestServer;
  const expected = { size: 0, vsize: 0, rawHash: '' };
  before(async () => {
    srv = await startTestServer({ config: { limits: { message_size: '100M' } } });
    const maildir = path.join(srv.mailRoot, 'example.test/bob');
    for (const sub of ['cur', 'new', 'tmp']) await mkdir(path.join(maildir, sub), { recursive: true });
    // The file is written block by block, as a delivery would (LF line ends, S= and W= in the name).
    const header = Buffer.from('From: big@remote.example\nTo: bob@example.test\nSubject: fifty megabytes\n\n', 'latin1');
    const tmp = path.join(maildir, 'tmp', 'big');
    const fh = await open(tmp, 'w');
    const raw = createHash('sha256');
    const stuffed = (b: Buffer) => Buffer.from(b.toString('latin1').replace(/\n/g, '\r\n').replace(/^\./gm, '..'), 'latin1');
    let size = 0;
    let lfs = 0;
    for (let i = -1; i < BLOCKS; i++) {
      const b = i < 0 ? header : block(i);
      await fh.write(b);
      raw.update(stuffed(b));
      size += b.length;
      lfs += b.toString('latin1').split('\n').length - 1;
    }
    await fh.close();
    expected.size = size;
    expected.vsize = size + lfs;
    expected.rawHash = raw.digest('hex');
    const { rename } = await import('node:fs/promises');
    await rename(tmp, path.join(maildir, 'new', `${Math.floor(Date.now() / 1000)}.M1P${process.pid}Q1.test,S=${size},W=${size + lfs}`));
  });
  after(async () => {
    await srv.stop();
  });

  it('streams it with CRLF and dot-stuffing, the size LIST announced, and flat server memory', async () => {
    assert.ok(expected.vsize > 50_000_000);
    const c = await pop3LoggedIn(srv.pop3sPort, 'bob@example.test', 'bob-pw');
    assert.equal((await c.cmd('LIST 1')).line, `+OK 1 ${expected.vsize}`);
    const socket = c.socket as tls.TLSSocket;
    socket.removeAllListeners('data');
    gc();
    await new Promise((r) => setTimeout(r, 50));
    gc();
    const base = process.memoryUsage();
    const samples: Array<{ heap: number; rss: number; received: number }> = [];
    const received = await new Promise<{ status: string; hash: string; bytes: number }>((resolve, reject) => {
      const hash = createHash('sha256');
      let status = '';
      let head = Buffer.alloc(0);
      let tail = Buffer.alloc(0);
      let bytes = 0;
      let nextStop = 4 * 1024 * 1024;
      const onData = (chunk: Buffer) => {
        if (!status) {
          head = Buffer.concat([head, chunk]);
          const nl = head.indexOf('\r\n');
          if (nl === -1) return;
          status = head.subarray(0, nl).toString('latin1');
          chunk = head.subarray(nl + 2);
        }
        // Everything up to the final ".\r\n" is message; keep the last 5 bytes back to find it.
        const data = Buffer.concat([tail, chunk]);
        const end = data.length >= 5 && data.subarray(data.length - 5).toString('latin1') === '\r\n.\r\n';
        const keep = end ? 3 : Math.min(5, data.length);
        hash.update(data.subarray(0, data.length - keep));
        bytes += data.length - keep;
        tail = Buffer.from(data.subarray(data.length - keep));
        if (end) {
          socket.off('data', onData);
          resolve({ status, hash: hash.digest('hex'), bytes });
          return;
        }
        if (bytes >= nextStop) {
          nextStop += 4 * 1024 * 1024;
          // A slow reader: stop, let the server's output back up, then measure after a GC.
          socket.pause();
          // (Two collections with a pause between: V8 frees ArrayBuffer memory on a background
          // sweeper, so one gc() can still count buffers that are already garbage.)
          setTimeout(() => {
            gc();
            setTimeout(() => {
              gc();
              const m = process.memoryUsage();
              samples.push({
                heap: m.heapUsed + m.arrayBuffers - base.heapUsed - base.arrayBuffers,
                rss: m.rss - base.rss,
                received: bytes,
              });
              socket.resume();
            }, 50);
          }, 250);
        }
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error('closed during RETR')));
      socket.write('RETR 1\r\n');
    });
    assert.equal(received.status, `+OK ${expected.vsize} octets`);
    assert.equal(received.hash, expected.rawHash, 'the bytes on the wire: CRLF and dot-stuffed');
    const dotLines = BLOCKS * (LINES_PER_BLOCK / 100);
    assert.equal(received.bytes - dotLines, expected.vsize, 'the announced size, without the stuffing dots');
    assert.ok(samples.length >= 10, `${samples.length} samples`);
    const maxHeap = Math.max(...samples.map((s) => s.heap));
    const maxRss = Math.max(...samples.map((s) => s.rss));
    console.log(
      `retained heap+buffers growth at most ${(maxHeap / 1048576).toFixed(1)} MB, RSS growth at most ${(maxRss / 1048576).toFixed(1)} MB over ${samples.length} samples`,
    );
    // Buffering the output (no flow control) retains 50-70 MB at these points and RSS grows as
    // much; streaming keeps about 1 MB (a few chunks and the socket buffers). RSS also holds
    // memory the allocator keeps after the GC (15-25 MB here), hence its looser bound, still
    // below the message's size.
    assert.ok(maxHeap < 16 * 1024 * 1024, `retained memory grew by ${maxHeap} bytes`);
    assert.ok(maxRss < 48 * 1024 * 1024, `RSS grew by ${maxRss} bytes`);
    c.destroy();
  });
});
