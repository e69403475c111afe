/** The parts of libmime (RFC 2047 encoded words) this project uses; the package has no types. */
declare module 'libmime' {
  export function decodeWords(text: string): string;
  const libmime: { decodeWords(text: string): string };
  export default libmime;
}
