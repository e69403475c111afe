/** Messages several IMAP tests store and read back. */

/** A multipart message with an encoded-word subject, a UTF-8 display name and a base64 attachment (lines). */
export const MIME_MESSAGE_LINES: readonly string[] = [
  'From: "Zoë Example" <zoe@remote.example>',
  'To: alice@example.test, "Bob B" <bob@example.test>',
  'Subject: =?UTF-8?B?R3LDvMOfZQ==?= from Zoë',
  'Date: Sun, 22 Nov 2026 04:01:00 +0000',
  'Message-ID: <mime-1@remote.example>',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b1"',
  '',
  '--b1',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'The quick brown fox jumps over the lazy dog.',
  '--b1',
  'Content-Type: application/octet-stream; name="data.bin"',
  'Content-Disposition: attachment; filename="data.bin"',
  'Content-Transfer-Encoding: base64',
  '',
  'AAECAwQFBgc=',
  '--b1--',
  '',
];

/** The same message as sent: CRLF line ends. */
export const MIME_MESSAGE = MIME_MESSAGE_LINES.join('\r\n');
