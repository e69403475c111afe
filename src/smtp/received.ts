import { headerSafe } from '../directory/address.js';

export interface ReceivedInfo {
  /** The name the client gave in HELO/EHLO/LHLO. */
  helo: string;
  /** Client IP address, or '' for a unix socket. */
  ip: string;
  /** Reverse DNS name, when known. */
  reverseName?: string;
  hostname: string;
  /** RFC 3848 protocol name: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP, LMTPS. */
  protocol: string;
  tls?: { version: string; cipher: string };
  queueId: string;
  /** The recipient, only when the transaction has exactly one. */
  forAddress?: string;
  date?: Date;
  /**
   * Leave out the client's name and address (and its TLS parameters): authenticated submissions
   * with submission.hide_client_ip, so a message does not reveal where its author was.
   */
  hideClient?: boolean;
}

/** RFC 5322 section 3.3 date-time: "Sun, 22 Nov 2026 04:01:00 +0000". */
export function rfc5322Date(date: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (n: number) => String(n).padStart(2, '0');
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const abs = Math.abs(offset);
  return `${days[date.getDay()]}, ${date.getDate()} ${months[date.getMonth()]} ${date.getFullYear()} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
}

/**
 * The Received: header field of RFC 5321 section 4.4, laid out as Postfix writes it:
 *   Received: from client.example (mail.client.example [192.0.2.1])
 *           (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)
 *           by mx.example.com (maild) with ESMTPS id 4F2A9C1B07E3
 *           for <bob@example.com>; Sun, 22 Nov 2026 04:01:00 +0000
 * With hideClient the from clause is left out (RFC 5322 section 3.6.7 allows any tokens):
 *   Received: by mx.example.com (maild) with ESMTPSA id 4F2A9C1B07E3
 *           for <bob@example.com>; Sun, 22 Nov 2026 04:01:00 +0000
 * Every client-supplied value is stripped of control characters, so no header can be injected.
 * Lines are joined with LF and the last one has no line end.
 */
export function receivedHeader(info: ReceivedInfo): string {
  const by = `by ${headerSafe(info.hostname)} (maild) with ${headerSafe(info.protocol)} id ${headerSafe(info.queueId)}`;
  const lines: string[] = [];
  if (info.hideClient) {
    lines.push(`Received: ${by}`);
  } else {
    const helo = headerSafe(info.helo || 'unknown').slice(0, 255);
    // RFC 5321 section 4.1.3: an IPv6 address literal is tagged "IPv6:", as Postfix writes it.
    const literal = info.ip.includes(':') ? `IPv6:${info.ip}` : info.ip;
    const client = info.ip ? `(${headerSafe(info.reverseName || 'unknown')} [${headerSafe(literal)}])` : '(localhost)';
    lines.push(`Received: from ${helo} ${client}`);
    if (info.tls) lines.push(`\t(using ${headerSafe(info.tls.version)} with cipher ${headerSafe(info.tls.cipher)})`);
    lines.push(`\t${by}`);
  }
  const date = rfc5322Date(info.date ?? new Date());
  if (info.forAddress) lines.push(`\tfor <${headerSafe(info.forAddress)}>; ${date}`);
  else {
    lines[lines.length - 1] += ';';
    lines.push(`\t${date}`);
  }
  return lines.join('\n');
}
