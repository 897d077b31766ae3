// The token service of the distribution token spec (docs/spec/auth/token.md, jwt.md) for registry.ts:
// Basic credentials in, an RS256 JWT out whose `x5c` header carries the cert the registry trusts.
// It runs in a child process so tests may block their own event loop (spawnSync skopeo, runVsys).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, sign } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const TOKEN_SERVICE = 'vsys-test-registry';
export const TOKEN_ISSUER = 'vsys-test-token-server';
const FLAG = '--vsys-token-server';

export interface TokenServer {
  realm: string;
  certFile: string;
  close(): Promise<void>;
}

interface ServeArgs {
  keyFile: string;
  certFile: string;
  user: string;
  password: string;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** Grants every scope asked for (TYPE:NAME:ACTIONS; NAME may hold a colon, as in host:port/repo). */
function parseScopes(scopes: string[]): { type: string; name: string; actions: string[] }[] {
  return scopes.flatMap((s) => s.split(' ')).filter((s) => s.split(':').length >= 3).map((s) => {
    const first = s.indexOf(':');
    const last = s.lastIndexOf(':');
    return { type: s.slice(0, first), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',') };
  });
}

function serve(args: ServeArgs): void {
  const key = fs.readFileSync(args.keyFile, 'utf8');
  const certDer = fs.readFileSync(args.certFile, 'utf8').replace(/-----[A-Z ]+-----|\s/g, '');
  const expected = `Basic ${Buffer.from(`${args.user}:${args.password}`).toString('base64')}`;
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://localhost');
    if (u.pathname !== '/token') return void res.writeHead(404).end();
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="vsys-test-token"', 'Content-Type': 'application/json' });
      return void res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'credentials required' }] }));
    }
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
    const claims = {
      iss: TOKEN_ISSUER,
      sub: args.user,
      aud: u.searchParams.get('service') ?? TOKEN_SERVICE,
      exp: now + 600,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(12).toString('hex'),
      access: parseScopes(u.searchParams.getAll('scope')),
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${input}.${b64url(sign('sha256', Buffer.from(input), key))}`;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 600, issued_at: new Date(now * 1000).toISOString() }));
  });
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address();
    process.stdout.write(`${JSON.stringify({ port: addr && typeof addr === 'object' ? addr.port : 0 })}\n`);
  });
  // The parent holds our stdin open; when it goes away, so do we.
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

/** Makes a signing key and self-signed cert in `dir` with openssl, then starts the service. */
export async function startTokenServer(dir: string, user: string, password: string): Promise<TokenServer> {
  const keyFile = path.join(dir, 'token-key.pem');
  const certFile = path.join(dir, 'token-cert.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=vsys test token signer'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr || String(r.error)}`);
  const args: ServeArgs = { keyFile, certFile, user, password };
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), FLAG, JSON.stringify(args)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve((JSON.parse(line) as { port: number }).port);
    });
    child.once('exit', (code) => reject(new Error(`token server exited (${code}) before listening`)));
  });
  return {
    realm: `http://127.0.0.1:${port}/token`,
    certFile,
    async close() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

if (process.argv[2] === FLAG && process.argv[3]) serve(JSON.parse(process.argv[3]) as ServeArgs);
