/**
 * The date extension (RFC 5260): RFC 5322 date-time parsing, time zones, date parts.
 */

export interface ZonedDate {
  /** UTC milliseconds. */
  time: number;
  /** Offset from UTC in minutes (east positive). */
  offset: number;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
/** RFC 5322 4.3 obsolete zone names; military zones count as -0000. */
const ZONE_NAMES: Record<string, number> = {
  UT: 0,
  GMT: 0,
  Z: 0,
  EST: -300,
  EDT: -240,
  CST: -360,
  CDT: -300,
  MST: -420,
  MDT: -360,
  PST: -480,
  PDT: -420,
};

export const DATE_PARTS = [
  'year',
  'month',
  'day',
  'date',
  'julian',
  'hour',
  'minute',
  'second',
  'time',
  'iso8601',
  'std11',
  'zone',
  'weekday',
];

/** "+hhmm" / "-hhmm" to minutes; undefined when malformed (RFC 5260 4.1.1 :zone). */
export function parseZone(zone: string): number | undefined {
  const m = /^([+-])(\d\d)(\d\d)$/.exec(zone.trim());
  if (!m || Number(m[3]) > 59) return undefined;
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

/** An RFC 5322 date-time (section 3.3, with the obsolete forms); undefined when it is not one. */
export function parseRfc5322Date(value: string): ZonedDate | undefined {
  const s = value.replace(/\([^()]*\)/g, ' ').trim();
  const m =
    /^(?:[A-Za-z]{3}\s*,\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([+-]\d{4}|[A-Za-z]{1,5})?\s*$/.exec(
      s,
    );
  if (!m) return undefined;
  const day = Number(m[1]);
  const month = MONTHS.indexOf(m[2]!.toLowerCase());
  let year = Number(m[3]);
  if (m[3]!.length === 2) year += year < 50 ? 2000 : 1900;
  else if (m[3]!.length === 3) year += 1900;
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6] ?? 0);
  if (month < 0 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  const zoneText = m[7] ?? '-0000';
  const offset = /^[+-]/.test(zoneText) ? parseZone(zoneText) : (ZONE_NAMES[zoneText.toUpperCase()] ?? 0);
  if (offset === undefined) return undefined;
  const time = Date.UTC(year, month, day, hour, minute, second) - offset * 60_000;
  return { time, offset };
}

const pad = (n: number, w = 2): string => String(Math.abs(n)).padStart(w, '0');

function zoneString(offset: number, colon: boolean): string {
  const sign = offset < 0 ? '-' : '+';
  const a = Math.abs(offset);
  return `${sign}${pad(Math.floor(a / 60))}${colon ? ':' : ''}${pad(a % 60)}`;
}

/** RFC 5260 4.2: the named part of a date seen in the zone `offset`. */
export function datePart(d: ZonedDate, part: string, offset: number): string | undefined {
  const t = new Date(d.time + offset * 60_000);
  const Y = pad(t.getUTCFullYear(), 4);
  const M = pad(t.getUTCMonth() + 1);
  const D = pad(t.getUTCDate());
  const h = pad(t.getUTCHours());
  const mi = pad(t.getUTCMinutes());
  const s = pad(t.getUTCSeconds());
  switch (part.toLowerCase()) {
    case 'year':
      return Y;
    case 'month':
      return M;
    case 'day':
      return D;
    case 'date':
      return `${Y}-${M}-${D}`;
    case 'julian':
      // Modified Julian Day: days since 1858-11-17
      return String(Math.floor((d.time + offset * 60_000) / 86_400_000) + 40587);
    case 'hour':
      return h;
    case 'minute':
      return mi;
    case 'second':
      return s;
    case 'time':
      return `${h}:${mi}:${s}`;
    case 'iso8601':
      return `${Y}-${M}-${D}T${h}:${mi}:${s}${offset === 0 ? 'Z' : zoneString(offset, true)}`;
    case 'std11':
      return `${DAYS[t.getUTCDay()]}, ${D} ${MONTHS[t.getUTCMonth()]!.replace(/^./, (c) => c.toUpperCase())} ${Y} ${h}:${mi}:${s} ${zoneString(offset, false)}`;
    case 'zone':
      return zoneString(offset, false);
    case 'weekday':
      return String(t.getUTCDay());
  }
  return undefined;
}

/** The local zone of this machine at that time (RFC 5260 4.1.1: no :zone means the local zone). */
export function localOffset(time: number): number {
  return -new Date(time).getTimezoneOffset();
}
