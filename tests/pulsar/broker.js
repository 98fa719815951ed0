#!/usr/bin/env node
// A Pulsar test broker for sagad's tests. It speaks the producer side of
// Pulsar's binary protocol using an implementation independent of sagad's:
// the npm package pulsar-flex (its generated protobuf classes for every
// command, its frame serializer and payload deserializer) and pulsar-flex's
// CRC32-C (crc-full). Every frame a client sends is checked strictly (sizes,
// magic, checksum, required fields, the order of commands); anything wrong
// is recorded as a violation, which the tests assert is empty.
//
// One process runs two brokers, "a" and "b", that share topics, stored
// messages and deduplication state, so that a lookup on one can redirect to
// the other. Topics belong to "a" unless config.owners says otherwise.
//
//   node broker.js [--ports A,B] [--control PORT] [--state FILE]
//                  [--tls-cert FILE --tls-key FILE] [--token T]
//
// Prints one line {"ready":true,"brokers":{"a":port,"b":port},"control":port}
// on stdout, then serves the control API on 127.0.0.1:
//   GET  /state            messages, lookups, producers, sends, violations...
//   POST /config {...}     merged into the config (dedup, owners, token,
//                          max_message_size, faults: see `config` below)
//   POST /stop {"broker"}  close that listener and its connections
//   POST /start {"broker"} listen again on the same port
//   POST /drop             drop every client connection now
//   POST /close-producers  send CLOSE_PRODUCER for every producer
//   POST /ping             send PING on every connection (PONGs are counted)
//   POST /garbage          send bytes that are not a frame on every connection
//   POST /release          send the receipts held back by hold_receipts
'use strict';

const fs = require('fs');
const http = require('http');
const net = require('net');
const tls = require('tls');
const pb = require('pulsar-flex/src/commands/protocol/pulsar/pulsar_pb');
const serde = require('pulsar-flex/src/client/serde');
const { CRC } = require('crc-full');

const T = pb.BaseCommand.Type;
const crc32c = new CRC('CRC32_C', 32, 0x1edc6f41, 0xffffffff, 0xffffffff, true, true);

// ------------------------------------------------------------- arguments

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const ports = (args.ports || '0,0').split(',').map(Number);
const useTls = !!args['tls-cert'];

const config = {
  dedup: true,
  owners: {}, // full topic name -> "a" | "b"
  token: args.token || null, // required token, or null
  max_message_size: 5 * 1024 * 1024,
  last_seq: {}, // "topic|producer" -> last stored sequence id (extra to dedup state)
  send_error: null, // {count, code, message}: next SENDs answered with SEND_ERROR
  producer_error: null, // {count, code, message}: next PRODUCERs answered with ERROR
  lookup_error: null, // {count, code, message}: next LOOKUPs answered Failed
  hold_producer: false, // PRODUCER gets no answer while true
  dup_receipts: 0, // next N stored messages get two receipts
  drop_after_store: 0, // next N stored messages: connection dropped instead of the receipt
  hold_receipts: false, // store, but keep the receipts until POST /release
};

// ----------------------------------------------------------------- state

const state = {
  messages: [], // stored: {topic, broker, producer_name, sequence_id, publish_time, partition_key, properties, payload}
  dedup: {}, // "topic|producer" -> highest stored sequence id
  connects: [], // {broker, client_version, protocol_version, auth_method, token_ok}
  lookups: [], // {broker, topic, authoritative, answer}
  producers: [], // {broker, topic, producer_id, name, last_sequence_id}
  sends: [], // {broker, topic, producer_name, sequence_id, event_id, outcome}
  pongs: 0,
  pings: 0,
  violations: [],
};
if (args.state && fs.existsSync(args.state)) {
  const saved = JSON.parse(fs.readFileSync(args.state, 'utf8'));
  state.messages = saved.messages;
  state.dedup = saved.dedup;
}

function persist() {
  if (args.state) fs.writeFileSync(args.state, JSON.stringify({ messages: state.messages, dedup: state.dedup }));
}

function violation(conn, what) {
  state.violations.push({ broker: conn.broker, what });
  process.stderr.write(`broker ${conn.broker}: VIOLATION ${what}\n`);
}

function serverError(code) {
  if (typeof code === 'number') return code;
  const v = pb.ServerError[String(code || 'UnknownError').toUpperCase()];
  return v === undefined ? 0 : v;
}

function take(name) {
  const f = config[name];
  if (!f || !(f.count > 0)) return null;
  f.count--;
  return f;
}

// ---------------------------------------------------------------- frames

function send(conn, type, field, body) {
  if (conn.socket.destroyed) return;
  const cmd = new pb.BaseCommand().setType(type);
  cmd['set' + field](body);
  conn.socket.write(serde.simpleCommand.serializer({ command: cmd }));
}

function brokerUrl(name) {
  return `pulsar://127.0.0.1:${listeners[name].port}`;
}

function brokerUrlTls(name) {
  return `pulsar+ssl://127.0.0.1:${listeners[name].port}`;
}

// Splits the connection's buffer into frames; each goes to onFrame.
function onData(conn, chunk) {
  conn.buf = conn.buf.length ? Buffer.concat([conn.buf, chunk]) : chunk;
  while (conn.buf.length >= 4 && !conn.socket.destroyed) {
    const total = conn.buf.readUInt32BE(0);
    if (total > config.max_message_size + 10 * 1024 || total < 6) {
      violation(conn, `frame size ${total}`);
      conn.socket.destroy();
      return;
    }
    if (conn.buf.length < 4 + total) return;
    const frame = conn.buf.subarray(0, 4 + total);
    conn.buf = conn.buf.subarray(4 + total);
    try {
      onFrame(conn, frame);
    } catch (e) {
      violation(conn, `undecodable frame: ${e.message}`);
      conn.socket.destroy();
      return;
    }
  }
}

// Checks a payload frame's magic and CRC32-C, then decodes it with
// pulsar-flex's own deserializer.
function decodePayload(conn, frame, cmdSize) {
  const at = 8 + cmdSize;
  if (frame.length < at + 10) throw new Error('payload frame too short');
  const magic = frame.readUInt16BE(at);
  if (magic !== 0x0e01) violation(conn, `magic ${magic.toString(16)} instead of 0e01`);
  const want = frame.readUInt32BE(at + 2);
  const got = crc32c.compute(frame.subarray(at + 6)) >>> 0;
  if (want !== got) violation(conn, `checksum ${want.toString(16)} != computed ${got.toString(16)}`);
  const metaSize = frame.readUInt32BE(at + 6);
  if (metaSize > frame.length - at - 10) throw new Error('metadata size over the frame');
  const raw = pb.MessageMetadata.deserializeBinary(frame.subarray(at + 10, at + 10 + metaSize));
  for (const f of ['ProducerName', 'SequenceId', 'PublishTime'])
    if (!raw['has' + f]()) violation(conn, `metadata without required ${f}`);
  if (raw.hasNumMessagesInBatch()) violation(conn, 'num_messages_in_batch set on a single message');
  const decoded = serde.payloadCommand.deserializer(frame);
  return { meta: raw, payload: decoded.messages[0].payload };
}

function onFrame(conn, frame) {
  const cmdSize = frame.readUInt32BE(4);
  if (cmdSize + 4 > frame.length - 4) throw new Error(`command size ${cmdSize} over the frame`);
  const cmd = pb.BaseCommand.deserializeBinary(frame.subarray(8, 8 + cmdSize));
  const type = cmd.getType();
  const payload = frame.length > 8 + cmdSize ? decodePayload(conn, frame, cmdSize) : null;
  if (type === T.SEND && !payload) violation(conn, 'SEND without a payload');
  if (type !== T.SEND && payload) violation(conn, `payload on command ${type}`);
  if (!conn.connected && type !== T.CONNECT) {
    violation(conn, `command ${type} before CONNECT`);
    conn.socket.destroy();
    return;
  }
  switch (type) {
    case T.CONNECT:
      return onConnect(conn, cmd.getConnect());
    case T.LOOKUP:
      return onLookup(conn, cmd.getLookuptopic());
    case T.PRODUCER:
      return onProducer(conn, cmd.getProducer());
    case T.SEND:
      return onSend(conn, cmd.getSend(), payload);
    case T.PING:
      state.pings++;
      return send(conn, T.PONG, 'Pong', new pb.CommandPong());
    case T.PONG:
      state.pongs++;
      return;
    case T.CLOSE_PRODUCER: {
      const c = cmd.getCloseProducer();
      conn.producers.delete(c.getProducerId());
      return send(conn, T.SUCCESS, 'Success', new pb.CommandSuccess().setRequestId(c.getRequestId()));
    }
    default:
      violation(conn, `unexpected command ${type}`);
  }
}

// -------------------------------------------------------------- commands

function onConnect(conn, c) {
  if (!c) return violation(conn, 'CONNECT without its body');
  if (conn.connected) return violation(conn, 'CONNECT twice');
  const method = c.getAuthMethodName();
  const data = Buffer.from(c.getAuthData_asU8()).toString('utf8');
  const tokenOk = !config.token || (method === 'token' && data === config.token);
  state.connects.push({
    broker: conn.broker,
    client_version: c.getClientVersion(),
    protocol_version: c.getProtocolVersion(),
    auth_method: method || null,
    token_ok: tokenOk,
  });
  if (!tokenOk) {
    // As a broker does: an ERROR, then the connection closes.
    const e = new pb.CommandError()
      .setRequestId(0)
      .setError(pb.ServerError.AUTHENTICATIONERROR)
      .setMessage('Unable to authenticate: invalid token');
    send(conn, T.ERROR, 'Error', e);
    conn.socket.end();
    return;
  }
  conn.connected = true;
  const r = new pb.CommandConnected()
    .setServerVersion('sagad-test-broker (pulsar-flex codec)')
    .setProtocolVersion(Math.min(c.getProtocolVersion(), 19))
    .setMaxMessageSize(config.max_message_size);
  send(conn, T.CONNECTED, 'Connected', r);
}

function ownerOf(topic) {
  return config.owners[topic] || 'a';
}

function onLookup(conn, c) {
  const topic = c.getTopic();
  const r = new pb.CommandLookupTopicResponse().setRequestId(c.getRequestId());
  const fault = take('lookup_error');
  let answer;
  if (fault) {
    r.setResponse(pb.CommandLookupTopicResponse.LookupType.FAILED)
      .setError(serverError(fault.code))
      .setMessage(fault.message || 'injected lookup error');
    answer = 'failed';
  } else {
    const owner = ownerOf(topic);
    r.setBrokerserviceurl(brokerUrl(owner)).setAuthoritative(true);
    if (useTls) r.setBrokerserviceurltls(brokerUrlTls(owner));
    if (owner === conn.broker) {
      r.setResponse(pb.CommandLookupTopicResponse.LookupType.CONNECT);
      answer = 'connect';
    } else {
      r.setResponse(pb.CommandLookupTopicResponse.LookupType.REDIRECT);
      answer = 'redirect:' + owner;
    }
  }
  state.lookups.push({ broker: conn.broker, topic, authoritative: c.getAuthoritative(), answer });
  send(conn, T.LOOKUP_RESPONSE, 'Lookuptopicresponse', r);
}

function onProducer(conn, c) {
  const topic = c.getTopic();
  const id = c.getProducerId();
  const reqId = c.getRequestId();
  const error = (code, message) =>
    send(conn, T.ERROR, 'Error', new pb.CommandError().setRequestId(reqId).setError(code).setMessage(message));
  if (config.hold_producer) return;
  const fault = take('producer_error');
  if (fault) return error(serverError(fault.code), fault.message || 'injected producer error');
  if (ownerOf(topic) !== conn.broker)
    return error(pb.ServerError.SERVICENOTREADY, `topic ${topic} is not served by broker ${conn.broker}`);
  const name = c.hasProducerName() ? c.getProducerName() : `test-${conn.broker}-${++producerSerial}`;
  for (const other of connections)
    for (const p of other.producers.values())
      if (other !== conn && p.topic === topic && p.name === name)
        return error(pb.ServerError.PRODUCERBUSY, `producer ${name} is already connected`);
  const key = `${topic}|${name}`;
  let last = -1;
  if (config.dedup) last = Math.max(state.dedup[key] ?? -1, config.last_seq[key] ?? -1);
  conn.producers.set(id, { topic, name });
  state.producers.push({ broker: conn.broker, topic, producer_id: id, name, last_sequence_id: last });
  const r = new pb.CommandProducerSuccess().setRequestId(reqId).setProducerName(name).setLastSequenceId(last);
  send(conn, T.PRODUCER_SUCCESS, 'ProducerSuccess', r);
}

function receipt(conn, producerId, seq, entry) {
  const id = new pb.MessageIdData().setLedgerid(entry < 0 ? 0 : 1).setEntryid(entry < 0 ? 0 : entry);
  send(conn, T.SEND_RECEIPT, 'SendReceipt', new pb.CommandSendReceipt().setProducerId(producerId).setSequenceId(seq).setMessageId(id));
}

function onSend(conn, c, payload) {
  const pid = c.getProducerId();
  const seq = c.getSequenceId();
  const p = conn.producers.get(pid);
  if (!p && conn.closed.has(pid)) {
    // The client sent before it read our CLOSE_PRODUCER: as Pulsar does,
    // drop the connection; the client sends again on a new one.
    state.sends.push({ broker: conn.broker, producer_id: pid, sequence_id: seq, outcome: 'closed_producer' });
    conn.socket.destroy();
    return;
  }
  if (!p) return violation(conn, `SEND for unknown producer ${pid}`);
  const meta = payload.meta;
  if (meta.getSequenceId() !== seq) violation(conn, `metadata sequence id ${meta.getSequenceId()} != SEND's ${seq}`);
  if (meta.getProducerName() !== p.name) violation(conn, `metadata producer ${meta.getProducerName()} != ${p.name}`);
  if (!(meta.getPublishTime() > 0)) violation(conn, 'publish_time not set');
  const props = {};
  for (const kv of meta.getPropertiesList()) props[kv.getKey()] = kv.getValue();
  const rec = { broker: conn.broker, topic: p.topic, producer_name: p.name, sequence_id: seq, event_id: props.event_id || null };
  const fault = take('send_error');
  if (fault) {
    rec.outcome = 'send_error';
    state.sends.push(rec);
    const e = new pb.CommandSendError()
      .setProducerId(pid)
      .setSequenceId(seq)
      .setError(serverError(fault.code))
      .setMessage(fault.message || 'injected send error');
    return send(conn, T.SEND_ERROR, 'SendError', e);
  }
  const key = `${p.topic}|${p.name}`;
  if (config.dedup && seq <= Math.max(state.dedup[key] ?? -1, config.last_seq[key] ?? -1)) {
    rec.outcome = 'duplicate';
    state.sends.push(rec);
    return receipt(conn, pid, seq, -1); // as Pulsar: acknowledged, not stored again
  }
  rec.outcome = 'stored';
  state.sends.push(rec);
  state.dedup[key] = seq;
  state.messages.push({
    topic: p.topic,
    broker: conn.broker,
    producer_name: p.name,
    sequence_id: seq,
    publish_time: meta.getPublishTime(),
    partition_key: meta.hasPartitionKey() ? meta.getPartitionKey() : null,
    properties: props,
    payload: Buffer.from(payload.payload).toString('utf8'),
  });
  persist();
  const entry = state.messages.length;
  if (config.drop_after_store > 0) {
    config.drop_after_store--;
    conn.socket.destroy(); // stored, but the receipt is lost
    return;
  }
  if (config.hold_receipts) {
    held.push({ conn, pid, seq, entry });
    return;
  }
  receipt(conn, pid, seq, entry);
  if (config.dup_receipts > 0) {
    config.dup_receipts--;
    receipt(conn, pid, seq, entry);
  }
}

// ------------------------------------------------------------- listeners

const connections = new Set();
const listeners = {};
const held = [];
let producerSerial = 0;

function onConnection(name, socket) {
  const conn = { broker: name, socket, buf: Buffer.alloc(0), connected: false, producers: new Map(), closed: new Set() };
  connections.add(conn);
  socket.on('data', (d) => onData(conn, d));
  socket.on('error', () => {});
  socket.on('close', () => connections.delete(conn));
}

function listen(name, port) {
  return new Promise((resolve, reject) => {
    const onConn = (s) => onConnection(name, s);
    const server = useTls
      ? tls.createServer({ cert: fs.readFileSync(args['tls-cert']), key: fs.readFileSync(args['tls-key']) }, onConn)
      : net.createServer(onConn);
    server.on('tlsClientError', () => {});
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      listeners[name] = { server, port: server.address().port };
      resolve();
    });
  });
}

function stop(name) {
  const l = listeners[name];
  if (!l || !l.server) return;
  l.server.close();
  l.server = null;
  for (const c of connections) if (c.broker === name) c.socket.destroy();
}

// ---------------------------------------------------------------- control

function control(req, res) {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    const reply = (code, obj) => {
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    let arg = {};
    try {
      arg = body ? JSON.parse(body) : {};
    } catch (e) {
      return reply(400, { error: 'bad JSON' });
    }
    const all = () => [...connections];
    switch (`${req.method} ${req.url}`) {
      case 'GET /state':
        return reply(200, {
          ...state,
          config,
          connections: all().map((c) => ({ broker: c.broker, connected: c.connected })),
        });
      case 'POST /config':
        Object.assign(config, arg);
        return reply(200, config);
      case 'POST /stop':
        stop(arg.broker || 'a');
        return reply(200, {});
      case 'POST /start':
        return listen(arg.broker || 'a', listeners[arg.broker || 'a'].port).then(
          () => reply(200, {}),
          (e) => reply(500, { error: e.message }),
        );
      case 'POST /drop':
        all().forEach((c) => c.socket.destroy());
        return reply(200, {});
      case 'POST /close-producers': {
        let n = 0;
        for (const c of all())
          for (const id of c.producers.keys()) {
            send(c, T.CLOSE_PRODUCER, 'CloseProducer', new pb.CommandCloseProducer().setProducerId(id).setRequestId(1000 + n++));
            c.producers.delete(id);
            c.closed.add(id);
          }
        return reply(200, { closed: n });
      }
      case 'POST /ping':
        all().forEach((c) => c.connected && send(c, T.PING, 'Ping', new pb.CommandPing()));
        return reply(200, {});
      case 'POST /garbage':
        all().forEach((c) => c.socket.write(Buffer.from([0, 0, 0, 9, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])));
        return reply(200, {});
      case 'POST /release':
        while (held.length) {
          const h = held.shift();
          receipt(h.conn, h.pid, h.seq, h.entry);
        }
        return reply(200, {});
      default:
        return reply(404, { error: 'unknown' });
    }
  });
}

async function main() {
  await listen('a', ports[0]);
  await listen('b', ports[1] || 0);
  const ctl = http.createServer(control);
  ctl.listen(Number(args.control || 0), '127.0.0.1', () => {
    const out = { ready: true, brokers: { a: listeners.a.port, b: listeners.b.port }, control: ctl.address().port };
    process.stdout.write(JSON.stringify(out) + '\n');
  });
}

main().catch((e) => {
  process.stderr.write(`broker: ${e.stack}\n`);
  process.exit(1);
});
