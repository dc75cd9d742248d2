// Example app for the Kafka sidecar gateway, in TypeScript with @grpc/grpc-js.
//
// It produces records, then consumes them as a consumer group through a
// Consume stream (credit granted, each record acked in the stream after
// handling it). Every event is printed to stdout as one JSON line, so a
// person or a test can follow it; logs go to stderr.
//
//   npm run build && node dist/examples/node/src/app.js \
//     --target unix:///var/run/gateway/gateway.sock \
//     --topic orders --group billing --produce 100 --consume 100
//
// With --tombstone-every N, every Nth record is a tombstone: a record with its
// key and no value, which deletes the key on a compacted topic (see
// tombstone). A consumer tells a tombstone by its unset value (see
// isTombstone), not by an empty one.
//
// Calls that fail with RESOURCE_EXHAUSTED (a rate limit or a full queue) are
// retried after the delay the gateway asks for (google.rpc.RetryInfo), or
// with a backoff when it gives none. Produce retries are safe because every
// record carries an idempotency key: a retried record is written once.

import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { setTimeout as sleepMs } from "node:timers/promises";

import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { credentials, Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";

import {
  ConsumeRequest,
  ConsumerServiceClient,
  Ordering,
  SettleOutcome,
  type ConsumeResponse,
  type Delivery,
} from "../../../gen/ts/gateway/v1/consumer";
import { ProducerServiceClient, type ProduceResponse, type Record } from "../../../gen/ts/gateway/v1/producer";
import { Duration } from "../../../gen/ts/google/protobuf/duration";
import { Status } from "../../../gen/ts/google/rpc/status";

/** Codes worth retrying: the gateway is throttling, or briefly unreachable. */
const retryable = new Set<number>([Code.RESOURCE_EXHAUSTED, Code.UNAVAILABLE]);

export type Sleep = (ms: number) => Promise<unknown>;

/**
 * Milliseconds to wait before retry number `attempt` (1, 2, ...): the
 * RetryInfo the gateway sent, or an exponential backoff capped at 5 s.
 */
export function retryDelayMs(status: Status | undefined, attempt: number): number {
  for (const detail of status?.details ?? []) {
    if (detail.typeUrl.endsWith("/google.rpc.RetryInfo")) {
      const delay = retryInfoDelay(detail.value);
      if (delay) {
        return delay.seconds * 1000 + delay.nanos / 1e6;
      }
    }
  }
  return Math.min(100 * 2 ** (attempt - 1), 5000);
}

/** Reads google.rpc.RetryInfo { google.protobuf.Duration retry_delay = 1; }. */
function retryInfoDelay(bytes: Uint8Array): Duration | undefined {
  const reader = new BinaryReader(bytes);
  let delay: Duration | undefined;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      delay = Duration.decode(reader.bytes());
    } else {
      reader.skip(wireType);
    }
  }
  return delay;
}

/** The google.rpc.Status (with its details) carried in an error's trailers. */
export function rpcStatus(err: ServiceError): Status | undefined {
  const [bin] = err.metadata?.get("grpc-status-details-bin") ?? [];
  return bin instanceof Buffer ? Status.decode(bin) : undefined;
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as ServiceError).code === "number";
}

/** Runs call, retrying RESOURCE_EXHAUSTED and UNAVAILABLE as the gateway asks. */
export async function withRetry<T>(call: () => Promise<T>, what: string, sleep: Sleep = sleepMs, attempts = 20): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!isServiceError(err) || !retryable.has(err.code) || attempt >= attempts) {
        throw err;
      }
      const delay = retryDelayMs(rpcStatus(err), attempt);
      console.error(`${what}: ${Code[err.code]} (${err.details}); retrying in ${delay} ms`);
      await sleep(delay);
    }
  }
}

/** Turns a callback-style unary call into a promise. */
function unary<Req, Res>(
  fn: (req: Req, md: Metadata, opts: { deadline: number }, cb: (err: ServiceError | null, res: Res) => void) => unknown,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    fn(req, new Metadata(), { deadline: Date.now() + 30_000 }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

function emit(event: string, fields: object): void {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

/**
 * A record that deletes key on a compacted topic: its value is left
 * undefined (unset), which the gateway writes as a null value. An empty
 * Buffer would be an empty value instead, not a tombstone.
 */
export function tombstone(key: Buffer, idempotencyKey: string): Record {
  return { key, value: undefined, headers: [], timestamp: undefined, idempotencyKey };
}

/**
 * Tells a delivered tombstone: its value is unset (undefined). An empty
 * value is an empty Buffer, so a length check cannot tell the two apart.
 */
export function isTombstone(d: Delivery): boolean {
  return d.value === undefined;
}

/**
 * The i-th record of a run: an order of customer i % 10, or, with
 * tombstoneEvery > 0, every tombstoneEvery-th one a tombstone of that
 * customer.
 */
export function nthRecord(runID: string, i: number, tombstoneEvery = 0): Record {
  const key = Buffer.from(`customer-${i % 10}`);
  const idempotencyKey = `${runID}-${i}`;
  if (tombstoneEvery > 0 && i % tombstoneEvery === tombstoneEvery - 1) {
    return tombstone(key, idempotencyKey);
  }
  return { key, value: Buffer.from(JSON.stringify({ order: i })), headers: [], timestamp: undefined, idempotencyKey };
}

/**
 * Writes count records in batches. Records a batch could not write for a
 * retryable reason are sent again, with the same idempotency keys.
 */
export async function produce(
  producer: ProducerServiceClient,
  topic: string,
  count: number,
  batch: number,
  runID: string,
  sleep: Sleep = sleepMs,
  tombstoneEvery = 0,
): Promise<void> {
  for (let start = 0; start < count; start += batch) {
    let pending: Record[] = [];
    for (let i = start; i < Math.min(start + batch, count); i++) {
      pending.push(nthRecord(runID, i, tombstoneEvery));
    }
    for (let attempt = 1; pending.length > 0; attempt++) {
      const records = pending;
      const res: ProduceResponse = await withRetry(
        () => unary(producer.produce.bind(producer), { topic, records }),
        "produce",
        sleep,
      );
      const retry: Record[] = [];
      let wait = 0;
      res.results.forEach((result, i) => {
        if (!result.error) {
          emit("produced", {
            message_id: result.messageId,
            partition: result.partition,
            offset: result.offset,
            tombstone: records[i].value === undefined,
          });
          return;
        }
        if (!retryable.has(result.error.code) || attempt >= 20) {
          throw new Error(`record ${records[i].idempotencyKey}: ${result.error.message}`);
        }
        retry.push(records[i]);
        wait = Math.max(wait, retryDelayMs(result.error, attempt));
      });
      if (retry.length > 0) {
        console.error(`${retry.length} records not written yet; retrying in ${wait} ms`);
        await sleep(wait);
      }
      pending = retry;
    }
  }
}

/**
 * Consumes through a Consume stream until want distinct message IDs have
 * been handled: grants the gateway credit, and acks each frame's records in
 * the stream after handling them, granting as much credit again. Starts a
 * new stream if one ends; a stream ends only once every settle it sent is
 * answered, so that no ack is lost with it.
 */
export async function consume(consumer: ConsumerServiceClient, topic: string, group: string, want: number): Promise<void> {
  const seen = new Set<string>();
  let attempt = 0;
  const window = 100; // records in hand at most
  while (seen.size < want) {
    const stream = consumer.consume();
    stream.write(
      ConsumeRequest.fromPartial({
        start: {
          subscription: { group, topics: [topic], ordering: Ordering.ORDERING_KEY, maxInFlight: window },
          credit: { records: window, bytes: 16 << 20 },
        },
      }),
    );
    let sent = 0;
    let answered = 0;
    try {
      for await (const frame of stream as AsyncIterable<ConsumeResponse>) {
        attempt = 0;
        if (frame.assignment) {
          emit("assignment", {
            assigned: frame.assignment.assigned.map((tp) => `${tp.topic}/${tp.partition}`),
            revoked: frame.assignment.revoked.map((tp) => `${tp.topic}/${tp.partition}`),
          });
        } else if (frame.settled) {
          answered = frame.settled.sequence;
          frame.settled.acks.forEach((outcome, i) => {
            if (outcome !== SettleOutcome.SETTLE_OUTCOME_APPLIED) {
              // STALE: the partition moved or the lease ran out; the record
              // is redelivered. PENDING: applied, its dedupe marker on its way.
              console.error(`settle ${frame.settled?.sequence}, ack ${i}: ${SettleOutcome[outcome]}`);
            }
          });
        } else if (frame.deliveries) {
          const tokens: number[] = [];
          let bytes = 0;
          for (const d of frame.deliveries.deliveries) {
            // Handle the record here; this app only reports it.
            emit("consumed", {
              message_id: d.messageId,
              partition: d.partition,
              offset: d.offset,
              attempt: d.attempt,
              duplicate: seen.has(d.messageId),
              tombstone: isTombstone(d),
            });
            seen.add(d.messageId);
            tokens.push(d.token);
            bytes += (d.key?.length ?? 0) + (d.value?.length ?? 0);
          }
          if (tokens.length > 0) {
            sent++;
            stream.write(
              ConsumeRequest.fromPartial({
                settle: { sequence: sent, acks: tokens, credit: { records: tokens.length, bytes } },
              }),
            );
          }
        }
        if (seen.size >= want && answered === sent) {
          break;
        }
      }
    } catch (err) {
      if (!isServiceError(err) || !retryable.has(err.code)) {
        throw err;
      }
      const delay = retryDelayMs(rpcStatus(err), ++attempt);
      console.error(`consume: ${Code[err.code]}; starting a new stream in ${delay} ms`);
      await sleepMs(delay);
    } finally {
      stream.on("error", () => {}); // the cancellation below ends the stream with CANCELLED
      stream.cancel();
    }
  }
}

function count(name: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`--${name}: ${JSON.stringify(value)} is not an integer >= ${min}`);
  }
  return n;
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      target: { type: "string", default: "127.0.0.1:7070" },
      topic: { type: "string" },
      group: { type: "string" },
      produce: { type: "string", default: "0" },
      consume: { type: "string", default: "0" },
      batch: { type: "string", default: "50" },
      "run-id": { type: "string", default: randomUUID() },
      "tombstone-every": { type: "string", default: "0" },
    },
  });
  if (!values.topic || !values.group) {
    throw new Error("--topic and --group are required");
  }
  const toProduce = count("produce", values.produce, 0);
  const toConsume = count("consume", values.consume, 0);
  const batch = count("batch", values.batch, 1);
  const tombstoneEvery = count("tombstone-every", values["tombstone-every"], 0);

  const creds = credentials.createInsecure();
  if (toProduce > 0) {
    const producer = new ProducerServiceClient(values.target, creds);
    await produce(producer, values.topic, toProduce, batch, values["run-id"], sleepMs, tombstoneEvery);
    producer.close();
  }
  if (toConsume > 0) {
    const consumer = new ConsumerServiceClient(values.target, creds);
    await consume(consumer, values.topic, values.group, toConsume);
    consumer.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
