/** The delivery module's former name, still imported by src/smtp/server.ts; use ./delivery.js. */
export type { MaildirStore } from './delivery.js';
