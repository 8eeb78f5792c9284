#!/usr/bin/env node
// tests/runners/runner.js -- a deja runner in Node.js, written from the
// README's protocol section alone: no npm package, the few protobuf
// messages are encoded and decoded by hand below. It serves the same test
// model as tests/runners/c_runner.c ("echo" the input "x"; "ctx" = u64
// [seed "s", 2 draws of "noise", 5 draws of "batch" asked at once, the
// clock]) under the name "noderunner", and misbehaves on request (param
// "action") so that test_runner.c can check every failure the host must
// survive. Run as: node runner.js [protocol2 | garbagehello]
'use strict';
const fs = require('fs');

// ---- protobuf, by hand: varints, tags, length-delimited fields ----------

function varint(v) { // v: BigInt >= 0 (or a Number)
  v = BigInt.asUintN(64, BigInt(v));
  const out = [];
  while (v >= 0x80n) { out.push(Number(v & 0x7fn) | 0x80); v >>= 7n; }
  out.push(Number(v));
  return Buffer.from(out);
}
const tag = (field, wire) => varint((field << 3) | wire);
const fieldVarint = (f, v) => Buffer.concat([tag(f, 0), varint(v)]);
const fieldBytes = (f, b) => Buffer.concat([tag(f, 2), varint(b.length), b]);
const fieldString = (f, s) => fieldBytes(f, Buffer.from(s, 'utf8'));

// Decode one message into {field: [values]}: BigInt for varints, Buffer
// for length-delimited and fixed-size fields.
function decode(buf) {
  const fields = {};
  let i = 0;
  const readVarint = () => {
    let v = 0n, shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(readVarint());
    const field = key >> 3, wire = key & 7;
    let val;
    if (wire === 0) val = readVarint();
    else if (wire === 1) { val = buf.subarray(i, i + 8); i += 8; }
    else if (wire === 5) { val = buf.subarray(i, i + 4); i += 4; }
    else if (wire === 2) { const n = Number(readVarint()); val = buf.subarray(i, i + n); i += n; }
    else throw new Error('wire type ' + wire);
    (fields[field] = fields[field] || []).push(val);
  }
  return fields;
}
const str = (f, n) => (f[n] ? f[n][0].toString('utf8') : '');
// A repeated varint field, packed (one Buffer) or not (BigInts).
function varints(f, n) {
  const out = [];
  for (const v of f[n] || []) {
    if (typeof v === 'bigint') { out.push(v); continue; }
    let i = 0;
    while (i < v.length) {
      let x = 0n, shift = 0n;
      for (;;) { const b = v[i++]; x |= BigInt(b & 0x7f) << shift; if (!(b & 0x80)) break; shift += 7n; }
      out.push(x);
    }
  }
  return out;
}

// ---- frames: a 4-byte little-endian length, then the message ------------

function readExact(n) {
  const buf = Buffer.alloc(n);
  let got = 0;
  while (got < n) {
    let r;
    try { r = fs.readSync(0, buf, got, n - got, null); } catch (e) {
      if (e.code === 'EAGAIN') continue;
      throw e;
    }
    if (r === 0) return got === 0 ? null : undefined;
    got += r;
  }
  return buf;
}
function writeAll(buf) {
  let off = 0;
  while (off < buf.length) {
    try { off += fs.writeSync(1, buf, off); } catch (e) { if (e.code !== 'EAGAIN') throw e; }
  }
}
function frame(body) {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length);
  return Buffer.concat([len, body]);
}
function send(field, body) { writeAll(frame(fieldBytes(field, body))); }
// The next RunnerMessage as {kind: field number, body: fields}; null at EOF.
function recv() {
  const len = readExact(4);
  if (len === null) return null;
  if (len === undefined) throw new Error('stream cut');
  const msg = decode(readExact(len.readUInt32LE(0)));
  const kind = Number(Object.keys(msg)[0]);
  return { kind, body: decode(msg[kind][0]) };
}

// RunnerMessage fields: hello 1, infer 2, call 3, reply 4, result 5.
const HELLO = 1, INFER = 2, CALL = 3, REPLY = 4, RESULT = 5;
const CALL_SEED = 1, CALL_RNG = 2, CALL_NOW = 3;

function call(kind, name, count) {
  send(CALL, Buffer.concat([fieldVarint(1, kind), fieldString(2, name || ''),
                            fieldVarint(3, count || 0)]));
  const m = recv();
  if (!m || m.kind !== REPLY) throw new Error('expected a reply');
  if (m.body[3]) throw new Error('call refused: ' + str(m.body, 3));
  return m.body;
}
const seed = (name) => varints(call(CALL_SEED, name, 1), 1)[0];
const rng = (stream, n) => varints(call(CALL_RNG, stream, n), 1);
// The clock: RunnerReply.now_ns (field 2), an int64 varint.
const now = () => { const f = call(CALL_NOW)[2]; return f ? BigInt.asIntN(64, f[0]) : 0n; };

function tensor(name, dtype, shape, data) { // DType: u64 = 12, f32 = 3
  return Buffer.concat([fieldString(1, name), fieldVarint(2, dtype),
                        fieldBytes(3, Buffer.concat(shape.map(varint))),
                        fieldBytes(4, data), fieldVarint(6, data.length)]);
}
function result(outputs) {
  send(RESULT, Buffer.concat(outputs.map((t) => fieldBytes(3, t))));
}
function failure(message) {
  send(RESULT, Buffer.concat([fieldVarint(1, 1), fieldString(2, message)]));
}
function hello(protocol) {
  send(HELLO, Buffer.concat([fieldVarint(1, protocol), fieldString(2, 'noderunner'),
                             fieldString(3, '1'),
                             fieldBytes(4, Buffer.from('node-runner-weights')),
                             fieldBytes(6, Buffer.concat([fieldString(1, 'node'),
                                                          fieldString(2, process.version)]))]));
}

// ---- the model -----------------------------------------------------------

function infer(req) {
  const inputs = (req[2] || []).map(decode);
  const params = {};
  for (const p of (req[3] || []).map(decode)) params[str(p, 1)] = p[3] ? str(p, 3) : p;
  switch (params.action) {
    case 'fail': return failure('asked to fail');
    case 'crash': process.kill(process.pid, 'SIGABRT'); break;
    case 'exit': process.exit(3); break;
    case 'print': process.stderr.write('a stray line, on stderr\n'); break;
    case 'garbage': return writeAll(frame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff])));
    case 'huge': return writeAll(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    case 'hello': return hello(1);
    case 'badtensor': return result([tensor('y', 3, [3], Buffer.from('12345'))]);
    case 'badcall': return send(CALL, Buffer.concat([fieldVarint(1, CALL_RNG), fieldString(2, 'n')]));
    case 'cut': writeAll(Buffer.from([100, 0, 0, 0, 1, 2, 3])); process.exit(0); break;
    default: break;
  }
  const v = [seed('s'), ...rng('noise', 1), ...rng('noise', 1), ...rng('batch', 5)];
  v.push(now());
  const ctx = Buffer.alloc(8 * v.length);
  v.forEach((x, i) => ctx.writeBigUInt64LE(BigInt.asUintN(64, x), 8 * i));
  const outs = [];
  const x = inputs.find((t) => str(t, 1) === 'x');
  if (x) {
    const shape = varints(x, 3);
    outs.push(tensor('echo', Number(x[2] ? x[2][0] : 0n), shape, x[4] ? x[4][0] : Buffer.alloc(0)));
  }
  process.stderr.write('served one\n');
  outs.push(tensor('ctx', 12, [v.length], ctx));
  result(outs);
}

const mode = process.argv[2] || '';
if (mode === 'garbagehello') {
  writeAll(frame(Buffer.from('this is not protobuf')));
  process.exit(0);
}
hello(mode === 'protocol2' ? 2 : 1);
for (;;) {
  const m = recv();
  if (m === null) break; // the host closed our stdin: done
  if (m.kind !== INFER) throw new Error('expected an infer, got ' + m.kind);
  infer(m.body);
}
