#!/usr/bin/env node
// Entry point of the `vsys` command: runs the compiled CLI and exits with its status.
import { main } from '../dist/src/cli/main.js';

const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
process.exitCode = code;
