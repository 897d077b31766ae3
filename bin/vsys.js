#!/usr/bin/env node
// Entry point of the `vsys` command: runs the compiled CLI and exits with its status.
import { main } from '../dist/src/cli/main.js';
import { EXIT } from '../dist/src/cli/io.js';

// A reader that goes away (`vsys scan --json DIR | head -1`) ends the run quietly with 141, the
// status of a process killed by SIGPIPE, as other tools report it; not a stack trace, not 1
// ("findings"). Commands that own a child (trace) stop it on their own 'close' of the stream.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(EXIT.brokenPipe);
  });
}

const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
process.exitCode = code;
