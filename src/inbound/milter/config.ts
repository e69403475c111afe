/**
 * The configuration of the milters, for the lead to mount under `inbound:` as `milters:`, in the
 * order Postfix's smtpd_milters lists them. Timeouts and the default action are Postfix's
 * milter_connect_timeout (30s), milter_command_timeout (30s), milter_content_timeout (300s) and
 * milter_default_action (tempfail). Durations are in ms once parsed.
 */
import { z } from 'zod';
import { parseDuration } from '../../config/units.js';
import { parseMilterAddress } from './connection.js';

const duration = (fallback: number) =>
  z
    .union([z.number(), z.string()])
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined || ms <= 0) {
        ctx.addIssue({ code: 'custom', message: `expected a duration such as 30, "30s" or "5m", got ${JSON.stringify(v)}` });
        return z.NEVER;
      }
      return ms;
    })
    .default(fallback);

const address = z.string().refine(
  (v) => {
    try {
      parseMilterAddress(v);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'expected a milter address such as inet:127.0.0.1:11332, 127.0.0.1:8891 or unix:/run/opendkim/opendkim.sock' },
);

export const milterSchema = z.strictObject({
  /** inet:host:port, host:port or unix:/path (Postfix's smtpd_milters syntax). */
  address,
  /** A name for log lines; the address when absent. */
  name: z.string().min(1).optional(),
  /** What a milter that cannot be reached, times out or misbehaves means for the message. */
  default_action: z.enum(['tempfail', 'accept', 'reject']).default('tempfail'),
  connect_timeout: duration(30_000),
  /** For each reply to an SMTP-stage event (connect, helo, mail, rcpt, data) and to OPTNEG. */
  command_timeout: duration(30_000),
  /** For each reply while the content goes over (headers, body, end of message). */
  content_timeout: duration(300_000),
});

export const miltersSchema = z.array(milterSchema).default([]);

export type MilterConfig = z.output<typeof milterSchema>;
