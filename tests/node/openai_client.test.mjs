// tests/node/openai_client.test.mjs -- the official OpenAI Node.js client
// (the `openai` package, pinned in package.json) and curl talking to
// `deja proxy` in front of `deja serve --model textgen-v1`, then replay and
// bisect of what was recorded against `deja serve` instances of other
// versions. Every server listens on 127.0.0.1 with an ephemeral port and
// is stopped at the end, whatever happens.
//
// Run by ctest (tests/CMakeLists.txt) with DEJA_BIN and DEJA_PLUGIN_PATH set.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';

const DEJA = process.env.DEJA_BIN;
assert.ok(DEJA, 'DEJA_BIN must name the deja binary');
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'deja-node-'));
const store = join(dir, 'proxy.store');
const children = new Set();

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

// Start `deja ARGS...` and resolve with the base URL it prints first.
function startServer(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(DEJA, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve({ child, url: out.slice(0, nl) });
    });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => reject(new Error(`deja ${args.join(' ')} exited ${code}: ${err}`)));
  });
}

// Stop a server with SIGTERM and check it exits 0.
function stopServer(s) {
  return new Promise((resolve) => {
    s.child.removeAllListeners('exit');
    s.child.on('exit', (code, signal) => {
      children.delete(s.child);
      resolve({ code, signal });
    });
    s.child.kill('SIGTERM');
  });
}

// Run deja and return { code, stdout, stderr } whatever the exit status.
async function deja(...args) {
  try {
    const { stdout, stderr } = await run(DEJA, args, { maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const ask = (seed, extra = {}) => ({
  model: 'textgen',
  messages: [
    { role: 'system', content: 'Tell a fable.' },
    { role: 'user', content: 'The tortoise' },
  ],
  seed,
  max_tokens: 48,
  temperature: 0.7,
  ...extra,
});

test('the OpenAI client through deja proxy, recorded, replayed and bisected', async () => {
  const v1 = await startServer(['serve', '--model', 'textgen-v1', '--listen', '127.0.0.1:0']);
  const proxy = await startServer(['--store', store, 'proxy', '--upstream', v1.url.replace(/\/v1$/, ''),
    '--listen', '127.0.0.1:0', '--tag', 'suite=node', '--redact-header', 'X-Tenant']);
  const direct = new OpenAI({ baseURL: v1.url, apiKey: 'sk-direct' });
  const client = new OpenAI({
    baseURL: proxy.url,
    apiKey: 'sk-node-SECRET',
    defaultHeaders: { 'X-Tenant': 'tenant-SECRET' },
  });

  // Non-streaming: the proxy hands back serve's answer as it is.
  for (const seed of [1, 2]) {
    const want = await direct.chat.completions.create(ask(seed));
    const got = await client.chat.completions.create(ask(seed));
    assert.equal(got.choices[0].message.content, want.choices[0].message.content);
    assert.equal(got.choices[0].finish_reason, 'length');
    assert.equal(got.model, 'textgen-v1');
    assert.ok(got.system_fingerprint.startsWith('fp_'));
  }

  // Streaming: chunks arrive one by one and assemble into the same text.
  const want = await direct.chat.completions.create(ask(3));
  const stream = await client.chat.completions.create(ask(3, { stream: true }));
  let text = '';
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.ok(chunks > 3, `expected several chunks, got ${chunks}`);
  assert.equal(text, want.choices[0].message.content);
  assert.equal(finish, 'length');

  // Completions, and an error the server answers.
  const comp = await client.completions.create({ model: 'textgen', prompt: 'A lion', seed: 5, max_tokens: 30 });
  assert.equal(comp.choices[0].text.length, 30);
  await assert.rejects(
    client.chat.completions.create({ ...ask(1), model: 'gpt-none' }),
    (e) => e.status === 404,
  );

  // curl, streaming and not.
  const body = JSON.stringify(ask(4, { stream: true }));
  const { stdout: sse } = await run('curl', ['-sN', '-H', 'Content-Type: application/json',
    '-H', 'Authorization: Bearer sk-curl-SECRET', '-d', body, `${proxy.url}/chat/completions`]);
  assert.match(sse, /data: \[DONE\]/);
  const { stdout: models } = await run('curl', ['-s', `${proxy.url}/models`]);
  assert.equal(JSON.parse(models).data[0].id, 'textgen');

  assert.deepEqual(await stopServer(proxy), { code: 0, signal: null });

  // What was recorded: 6 exchanges (GET /models is passed through unrecorded).
  const ls = await deja('--store', store, 'ls', '--json');
  assert.equal(ls.code, 0, ls.stderr);
  const traces = ls.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(traces.length, 6);
  for (const t of traces) {
    const shown = await deja('--store', store, 'show', t.id, '--json');
    assert.equal(shown.code, 0);
    assert.ok(!shown.stdout.includes('SECRET'), `a secret reached the store in ${t.id}`);
    assert.ok(!/authorization|x-tenant/i.test(shown.stdout), `a redacted header in ${t.id}`);
  }
  const ok = traces.filter((t) => t.status === 'ok').map((t) => t.id);
  assert.equal(ok.length, 5);

  // Replay: same on v1, diverged on v6.
  const same = await deja('--store', store, 'replay', ...ok, '--model', v1.url);
  assert.equal(same.code, 0, same.stdout + same.stderr);
  assert.match(same.stdout, /5 same/);
  const servers = [v1];
  for (const v of [2, 3, 4, 5, 6]) {
    servers.push(await startServer(['serve', '--model', `textgen-v${v}`, '--listen', '127.0.0.1:0']));
  }
  const diverged = await deja('--store', store, 'replay', '--status', 'ok', '--model', servers[5].url);
  assert.equal(diverged.code, 1, diverged.stdout + diverged.stderr);
  assert.match(diverged.stdout, /system_fingerprint: recorded fp_/);

  // Bisect across six deja serve instances finds v4.
  const bisect = await deja('--store', store, 'bisect', ...servers.map((s) => s.url), '--status', 'ok');
  assert.equal(bisect.code, 0, bisect.stdout + bisect.stderr);
  assert.match(bisect.stdout, new RegExp(`first bad version: ${servers[3].url.replace(/[.]/g, '\\.')} \\(version 4 of 6\\)`));
  for (const s of servers) await stopServer(s);
});
