// unix-crypt-td-js ships no types. Its CommonJS export is crypt(pw, salt[, returnBytes]), where
// pw and salt are strings (UTF-16 code units) or arrays of byte values.
declare module 'unix-crypt-td-js' {
  function unixCryptTD(password: string | readonly number[], salt: string | readonly number[], returnBytes?: false): string;
  export = unixCryptTD;
}
