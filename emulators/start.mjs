#!/usr/bin/env node
// Local AWS emulators for development and tests: SQS (fauxqs) and Kinesis
// (kinesalite), in memory, in this one Node process, bound to 127.0.0.1 only.
//
//   node emulators/start.mjs [--sqs-port N] [--kinesis-port N] [--only sqs|kinesis]
//                            [--exit-on-stdin-eof] [--keep-alive-timeout-ms N]
//
// Port 0 picks a free port. Once every emulator that was asked for listens and
// answers, ONE JSON line is printed on stdout, e.g.
//   {"sqs":"http://127.0.0.1:9324","kinesis":"http://127.0.0.1:4567"}
// and nothing else is ever written to stdout (diagnostics go to stderr).
// SIGTERM / SIGINT / SIGHUP stop it with exit code 0; with --exit-on-stdin-eof it
// also stops when its stdin reaches EOF, so a test's child process dies with the
// test even when the test binary crashes or is killed.
//
// Everything is in memory: a restart starts with no queues and no streams.
//
// Findings that shaped this file (fauxqs 1.9.2 with fastify 5, kinesalite 3.3.3, Node 20):
//
// * Import. fauxqs's package.json "exports" only maps ".", so
//   `import ... from 'fauxqs/dist/app.js'` fails (ERR_PACKAGE_PATH_NOT_EXPORTED);
//   `import { startFauxqs } from 'fauxqs'` is the same module. kinesalite is
//   CommonJS: its default export is the factory.
//
// * Signatures. Neither emulator verifies request signatures. fauxqs ignores the
//   Authorization header except to read the region from it. kinesalite requires
//   an Authorization header with Credential, Signature and SignedHeaders and an
//   X-Amz-Date (else MissingAuthenticationTokenException /
//   IncompleteSignatureException) but never checks the signature or the date,
//   so a proxy may rewrite request bodies (keep Content-Length right).
//
// * Binding. fauxqs's startFauxqs() hard-codes `app.listen({port, host: "0.0.0.0"})`;
//   its `host` option (and FAUXQS_HOST) only sets the host name written into queue
//   URLs, it does not choose the interface. kinesalite takes a host in listen().
//   So net.Server.prototype.listen is patched below to force 127.0.0.1 for every
//   TCP server created in this process, whatever the library asks for.
//
// * Keep-alive. Neither library lets us pass http.Server options through
//   startFauxqs()/kinesalite(): fastify creates its server with keepAliveTimeout
//   72 s (fastify's default), kinesalite uses Node's default of 5 s. The Go SDK's
//   HTTP transport keeps idle connections for 90 s (IdleConnTimeout). A server that
//   closes an idle connection before the client does races with the client reusing
//   it: the request goes out on a socket the server is closing, and the client sees
//   EOF / "connection reset" / "use of closed network connection" and has to retry.
//   The same listen patch therefore sets keepAliveTimeout on every http.Server to
//   --keep-alive-timeout-ms (default 600 s, well above 90 s), so that the Go client
//   is always the side that closes idle connections.
//   Measured here (2 cores, Go SDK sqs v1.53): 15 sequential drains of 3000
//   messages (receive 10 + DeleteMessageBatch, 2/8/16 consumers) saw zero
//   retries with keepAliveTimeout 72 s and with 600 s, and a sweep of idle gaps
//   across kinesalite's close point saw no failed call either: the dropped
//   responses reported for fauxqs did not reproduce, so this is a mitigation of
//   a known race, not a measured fix. Expect the odd retry in tests anyway.
//   headersTimeout is left at Node's default (60 s): since Node 18 it is enforced
//   by the connections checker only while a request's headers are arriving, not
//   on idle keep-alive connections, so it does not interact with keep-alive here
//   (checked on Node 20: an idle keep-alive connection survives well past
//   headersTimeout). requestTimeout is 0 in fastify and 300 s in kinesalite, both
//   above SQS's 20 s long poll.

import http from 'node:http';
import net from 'node:net';
import process from 'node:process';
import { parseArgs } from 'node:util';

const HOST = '127.0.0.1';

const USAGE = `usage: node emulators/start.mjs [options]

  --sqs-port N               SQS (fauxqs) port, 0 = any free port (default 9324)
  --kinesis-port N           Kinesis (kinesalite) port, 0 = any free port (default 4567)
  --only sqs|kinesis         start just one of the two
  --exit-on-stdin-eof        exit when stdin reaches EOF (for test harnesses)
  --keep-alive-timeout-ms N  HTTP keep-alive timeout of both servers (default 600000)
  -h, --help                 this text

Binds 127.0.0.1 only. Prints one JSON line with the endpoints when ready.`;

// Diagnostics go to stderr. When the parent (a test binary) dies, stderr is a
// pipe without a reader: writing then fails with EPIPE, which must not stop
// the shutdown that the parent's death triggers.
function logErr(msg) {
  try {
    process.stderr.write(`start.mjs: ${msg}\n`);
  } catch {
    // nobody is listening
  }
}
process.stderr.on('error', () => {});
process.stdout.on('error', () => {});

function fail(msg, code = 2) {
  logErr(msg);
  process.exit(code);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      'sqs-port': { type: 'string', default: '9324' },
      'kinesis-port': { type: 'string', default: '4567' },
      only: { type: 'string' },
      'exit-on-stdin-eof': { type: 'boolean', default: false },
      'keep-alive-timeout-ms': { type: 'string', default: '600000' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  fail(`${err.message}\n${USAGE}`);
}
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

function intArg(name, min, max) {
  const raw = args[name];
  if (!/^\d+$/.test(raw)) fail(`--${name}: not a non-negative integer: ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (n < min || n > max) fail(`--${name}: must be ${min}..${max}, got ${n}`);
  return n;
}

const sqsPort = intArg('sqs-port', 0, 65535);
const kinesisPort = intArg('kinesis-port', 0, 65535);
const keepAliveTimeoutMs = intArg('keep-alive-timeout-ms', 1000, 2 ** 31 - 1);
if (args.only !== undefined && args.only !== 'sqs' && args.only !== 'kinesis') {
  fail(`--only: expected sqs or kinesis, got ${JSON.stringify(args.only)}`);
}
const wantSQS = args.only === undefined || args.only === 'sqs';
const wantKinesis = args.only === undefined || args.only === 'kinesis';

// Keep stdout for the ready line alone: anything a library might console.log goes to stderr.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

// --- force 127.0.0.1 and a long keep-alive on every server of this process -------------
const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...listenArgs) {
  const first = listenArgs[0];
  if (first !== null && typeof first === 'object') {
    // listen(options[, cb]); leave unix sockets and inherited handles alone.
    const isTCP = first.path === undefined && first.handle === undefined && first.fd === undefined &&
      first._handle === undefined;
    if (isTCP) listenArgs[0] = { ...first, host: HOST };
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, cb])
    if (typeof listenArgs[1] === 'string') listenArgs[1] = HOST;
    else listenArgs.splice(1, 0, HOST);
  } else if (first === undefined || typeof first === 'function') {
    // listen([cb]): any port
    listenArgs.unshift(0, HOST);
  }
  if (this instanceof http.Server) {
    this.keepAliveTimeout = keepAliveTimeoutMs;
  }
  return originalListen.apply(this, listenArgs);
};

// --- shutdown ---------------------------------------------------------------------------
const stoppers = [];
let stopping = false;
async function shutdown(why, code = 0) {
  if (stopping) return;
  stopping = true;
  if (why) logErr(`stopping (${why})`);
  // Do not wait forever for clients that keep connections open.
  setTimeout(() => process.exit(code), 2000).unref();
  await Promise.allSettled(stoppers.map((stop) => stop()));
  process.exit(code);
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => shutdown(sig));
}
if (args['exit-on-stdin-eof']) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.on('data', () => {}); // discard input; only EOF matters
  process.stdin.resume();
}
// A client that drops its connection in the middle of a request body makes Node destroy the
// request with an "aborted" error (code ECONNRESET), and kinesalite rethrows every error of its
// requests (`req.on('error', (err) => { throw err })`): one such client stopped this whole
// process (seen in CI when a fault test killed the processor mid-request). The request is gone
// either way; a real endpoint keeps serving the others, and so do we.
function isClientAbort(err) {
  return err instanceof Error && err.code === 'ECONNRESET' && err.message === 'aborted';
}
process.on('uncaughtException', (err) => {
  if (isClientAbort(err)) {
    logErr('a client dropped its connection in the middle of a request (ignored)');
    return;
  }
  logErr(`uncaught exception: ${err && err.stack ? err.stack : err}`);
  shutdown('uncaught exception', 1);
});
process.on('unhandledRejection', (err) => {
  logErr(`unhandled rejection: ${err && err.stack ? err.stack : err}`);
  shutdown('unhandled rejection', 1);
});

// --- emulators --------------------------------------------------------------------------
async function startSQS(port) {
  const { startFauxqs } = await import('fauxqs');
  const server = await startFauxqs({ port, logger: false, defaultRegion: 'us-east-1' });
  stoppers.push(() => server.stop());
  return `http://${HOST}:${server.port}`;
}

async function startKinesis(port) {
  const { default: kinesalite } = await import('kinesalite');
  const server = kinesalite({ createStreamMs: 50, deleteStreamMs: 50, updateStreamMs: 50, shardLimit: 100 });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  stoppers.push(() => new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
  }));
  return `http://${HOST}:${server.address().port}`;
}

// One HTTP GET; resolves with {status, body}.
function get(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function waitUntil(what, check) {
  const deadline = Date.now() + 20000;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not become ready${last ? `: ${last.message}` : ''}`);
}

async function main() {
  const ready = {};
  const starts = [];
  if (wantSQS) {
    starts.push(startSQS(sqsPort).then((url) => { ready.sqs = url; }, (err) => {
      throw new Error(`SQS (fauxqs) on ${HOST}:${sqsPort}: ${err.message}`);
    }));
  }
  if (wantKinesis) {
    starts.push(startKinesis(kinesisPort).then((url) => { ready.kinesis = url; }, (err) => {
      throw new Error(`Kinesis (kinesalite) on ${HOST}:${kinesisPort}: ${err.message}`);
    }));
  }
  await Promise.all(starts);

  if (ready.sqs) {
    await waitUntil('SQS', async () => {
      const { status, body } = await get(`${ready.sqs}/health`);
      return status === 200 && body.includes('ok');
    });
  }
  if (ready.kinesis) {
    // An unsigned GET is answered with 403 AccessDeniedException: any answer will do.
    await waitUntil('Kinesis', async () => (await get(`${ready.kinesis}/`)).status > 0);
  }

  const line = {};
  if (ready.sqs) line.sqs = ready.sqs;
  if (ready.kinesis) line.kinesis = ready.kinesis;
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

main().catch((err) => {
  logErr(err.message);
  shutdown(null, 1);
});
