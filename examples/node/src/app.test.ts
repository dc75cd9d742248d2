// Tests of the example's retry rules against an in-process gRPC server that
// throttles the way the gateway does: RESOURCE_EXHAUSTED with a RetryInfo.
//
//   npm run build && npm test

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Metadata, Server, ServerCredentials, credentials, status as Code, type ServiceError } from "@grpc/grpc-js";

import {
  type ProduceRequest,
  type RecordResult,
  ProducerServiceClient,
  ProducerServiceService,
} from "../../../gen/ts/gateway/v1/producer";
import { Delivery } from "../../../gen/ts/gateway/v1/consumer";
import { Record } from "../../../gen/ts/gateway/v1/producer";
import { Duration } from "../../../gen/ts/google/protobuf/duration";
import { Status } from "../../../gen/ts/google/rpc/status";
import { isTombstone, nthRecord, produce, retryDelayMs, withRetry } from "./app";

function throttled(delayMs: number, message: string): Status {
  const retryInfo = new BinaryWriter();
  Duration.encode({ seconds: Math.floor(delayMs / 1000), nanos: (delayMs % 1000) * 1e6 }, retryInfo.uint32(10).fork()).join();
  return {
    code: Code.RESOURCE_EXHAUSTED,
    message,
    details: [{ typeUrl: "type.googleapis.com/google.rpc.RetryInfo", value: Buffer.from(retryInfo.finish()) }],
  };
}

// The fake gateway refuses the first call whole, fails the second record of
// the second call, and accepts everything after that.
const requests: ProduceRequest[] = [];
const server = new Server();
let client: ProducerServiceClient;

before(async () => {
  server.addService(ProducerServiceService, {
    produce: (call: { request: ProduceRequest }, callback: (err: Partial<ServiceError> | null, res?: unknown) => void) => {
      requests.push(call.request);
      if (requests.length === 1) {
        const st = throttled(1500, "rate limited");
        const md = new Metadata();
        md.set("grpc-status-details-bin", Buffer.from(Status.encode(st).finish()));
        callback({ code: Code.RESOURCE_EXHAUSTED, details: st.message, metadata: md });
        return;
      }
      const results: RecordResult[] = call.request.records.map((r, i) =>
        requests.length === 2 && i === 1
          ? { partition: 0, offset: 0, timestamp: undefined, messageId: r.idempotencyKey, error: throttled(250, "queue full") }
          : { partition: 0, offset: i, timestamp: undefined, messageId: r.idempotencyKey, error: undefined },
      );
      callback(null, { results });
    },
    produceStream: () => {},
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  client = new ProducerServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
});

after(() => {
  client.close();
  server.forceShutdown();
});

test("produce waits the retry delay the gateway asks for and resends only the failed records", async () => {
  const sleeps: number[] = [];
  await produce(client, "orders", 3, 10, "run", async (ms) => sleeps.push(ms));
  assert.deepEqual(sleeps, [1500, 250]);
  assert.deepEqual(
    requests.map((r) => r.records.map((rec) => rec.idempotencyKey)),
    [["run-0", "run-1", "run-2"], ["run-0", "run-1", "run-2"], ["run-1"]],
  );
});

test("retry delay backs off when the gateway gives no delay", () => {
  const bare: Status = { code: Code.RESOURCE_EXHAUSTED, message: "", details: [] };
  assert.deepEqual([1, 2, 3].map((n) => retryDelayMs(bare, n)), [100, 200, 400]);
  assert.equal(retryDelayMs(undefined, 10), 5000);
});

test("errors that retrying cannot fix are thrown at once", async () => {
  let calls = 0;
  const invalid = Object.assign(new Error("bad"), { code: Code.INVALID_ARGUMENT, details: "bad", metadata: new Metadata() });
  await assert.rejects(
    withRetry(async () => {
      calls++;
      throw invalid;
    }, "produce", async () => assert.fail("slept")),
  );
  assert.equal(calls, 1);
});

// A tombstone reaches the gateway with its key and no value (unset, not
// empty), and a consumer tells it from a record whose value is empty; both
// are checked as the other side decodes them.
test("every nth record is sent without a value", () => {
  const decoded = [0, 1, 2, 3].map((i) => Record.decode(Record.encode(nthRecord("run", i, 2)).finish()));
  assert.deepEqual(
    decoded.map((r) => r.value !== undefined),
    [true, false, true, false],
  );
  assert.deepEqual(
    decoded.map((r) => r.key?.toString()),
    ["customer-0", "customer-1", "customer-2", "customer-3"],
  );
  assert.equal(Record.decode(Record.encode(nthRecord("run", 1)).finish()).value?.toString(), `{"order":1}`);
});

test("a delivery without a value is a tombstone and an empty value is not", () => {
  const decoded = (value: Buffer | undefined) =>
    Delivery.decode(Delivery.encode(Delivery.fromPartial({ key: Buffer.from("k"), value })).finish());
  assert.equal(isTombstone(decoded(undefined)), true);
  assert.equal(isTombstone(decoded(Buffer.alloc(0))), false);
  assert.equal(isTombstone(decoded(Buffer.from("x"))), false);
});
