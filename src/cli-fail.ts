// How every wasmnet command gives up on bad input: one line on stderr, exit status 2.
export function fail(msg: string): never {
  process.stderr.write(`wasmnet: ${msg}\n`);
  process.exit(2);
}
