#!/usr/bin/env node
// Runs pulsar-flex's own producer (an independent Pulsar client) against
// the test broker, to show that the broker behaves as a real client
// expects: lookup, CONNECT (with a token when given), PRODUCER, SEND with
// its checksum and metadata, receipts, CLOSE_PRODUCER.
//
//   node flex_producer.js --service 127.0.0.1:PORT --topic TOPIC [--count N] [--token T]
//
// Prints {"sent": N, "producer": NAME} on stdout and exits 0, or the error
// on stderr and exits 1.
'use strict';

const { Producer, logLevel } = require('pulsar-flex');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];

async function main() {
  const producer = new Producer({
    topic: args.topic,
    discoveryServers: [args.service],
    jwt: args.token,
    producerAccessMode: Producer.ACCESS_MODES.SHARED,
    logLevel: logLevel.ERROR,
  });
  await producer.create();
  const count = Number(args.count || 3);
  for (let i = 0; i < count; i++)
    await producer.sendMessage({ payload: JSON.stringify({ n: i, from: 'pulsar-flex' }), properties: { n: String(i) } });
  const name = producer._producerName;
  await producer.close();
  process.stdout.write(JSON.stringify({ sent: count, producer: name }) + '\n');
  process.exit(0);
}

const timer = setTimeout(() => {
  process.stderr.write('pulsar-flex producer: timed out\n');
  process.exit(1);
}, 20000);
timer.unref();

main().catch((e) => {
  process.stderr.write(`pulsar-flex producer: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
