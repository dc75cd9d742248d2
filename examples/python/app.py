"""Example app for the Kafka sidecar gateway, in Python with grpcio.

It produces records, then consumes them as a consumer group through a Consume
stream (credit granted, each record acked in the stream after handling it).
Every event is printed to stdout as one JSON line, so a person or a test can
follow it; logs go to stderr.

    PYTHONPATH=gen/python python examples/python/app.py \
        --target unix:///var/run/gateway/gateway.sock \
        --topic orders --group billing --produce 100 --consume 100

With --tombstone-every N, every Nth record is a tombstone: a record with its
key and no value, which deletes the key on a compacted topic (see tombstone).
A consumer tells a tombstone by its unset value (see is_tombstone), not by an
empty one.

Calls that fail with RESOURCE_EXHAUSTED (a rate limit or a full queue) are
retried after the delay the gateway asks for (google.rpc.RetryInfo), or with
a backoff when it gives none. Produce retries are safe because every record
carries an idempotency key: a retried record is written once.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import time
import uuid
from typing import Callable, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from gateway.v1 import consumer_pb2, consumer_pb2_grpc, producer_pb2, producer_pb2_grpc

log = logging.getLogger("example")
T = TypeVar("T")

# Codes worth retrying: the gateway is throttling, or is briefly unreachable
# (restarting, or an Ack whose dedupe markers are not yet written).
RETRYABLE = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
# grpc.StatusCode by number, for the google.rpc.Status of a RecordResult.
CODES = {code.value[0]: code for code in grpc.StatusCode}


def retry_delay(status: status_pb2.Status | None, attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): the
    RetryInfo the gateway sent, or an exponential backoff capped at 5 s."""
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info.retry_delay.ToTimedelta().total_seconds()
    return min(0.1 * 2 ** min(attempt - 1, 10), 5.0)


def rpc_status(err: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status (with its details) carried in an error's trailers."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return None


def with_retry(call: Callable[[], T], what: str, sleep: Callable[[float], None] = time.sleep,
               attempts: int = 20) -> T:
    """Runs call, retrying RESOURCE_EXHAUSTED and UNAVAILABLE as the gateway asks."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except grpc.RpcError as err:
            if err.code() not in RETRYABLE or attempt == attempts:
                raise
            delay = retry_delay(rpc_status(err), attempt)
            log.warning("%s: %s (%s); retrying in %.2fs", what, err.code().name, err.details(), delay)
            sleep(delay)
    raise AssertionError("unreachable")


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def tombstone(key: bytes, idempotency_key: str) -> producer_pb2.Record:
    """A record that deletes key on a compacted topic: its value is left unset,
    which the gateway writes as a null value. value=b"" would set an empty
    value instead, not a tombstone."""
    return producer_pb2.Record(key=key, idempotency_key=idempotency_key)


def is_tombstone(delivery: consumer_pb2.Delivery) -> bool:
    """Tells a delivered tombstone: its value is unset. An empty value is set
    and empty, so `not delivery.value` cannot tell the two apart."""
    return not delivery.HasField("value")


def nth_record(run_id: str, i: int, tombstone_every: int = 0) -> producer_pb2.Record:
    """The i-th record of a run: an order of customer i % 10, or, with
    tombstone_every > 0, every tombstone_every-th one a tombstone of that
    customer."""
    key, idempotency_key = f"customer-{i % 10}".encode(), f"{run_id}-{i}"
    if tombstone_every > 0 and i % tombstone_every == tombstone_every - 1:
        return tombstone(key, idempotency_key)
    return producer_pb2.Record(key=key, value=json.dumps({"order": i}).encode(),
                               idempotency_key=idempotency_key)


def produce(producer: producer_pb2_grpc.ProducerServiceStub, topic: str, count: int, batch: int,
            run_id: str, sleep: Callable[[float], None] = time.sleep, tombstone_every: int = 0) -> None:
    """Writes count records in batches. Records a batch could not write for a
    retryable reason are sent again, with the same idempotency keys."""
    for start in range(0, count, batch):
        pending = [nth_record(run_id, i, tombstone_every) for i in range(start, min(start + batch, count))]
        attempt = 0
        while pending:
            attempt += 1
            request = producer_pb2.ProduceRequest(topic=topic, records=pending)
            response = with_retry(lambda: producer.Produce(request, timeout=30), "produce", sleep)
            retry, wait = [], 0.0
            for record, result in zip(pending, response.results):
                if not result.HasField("error"):
                    emit("produced", message_id=result.message_id, partition=result.partition,
                         offset=result.offset, tombstone=not record.HasField("value"))
                    continue
                if CODES.get(result.error.code) not in RETRYABLE or attempt >= 20:
                    raise RuntimeError(f"record {record.idempotency_key}: {result.error.message}")
                retry.append(record)
                wait = max(wait, retry_delay(result.error, attempt))
            if retry:
                log.warning("%d records not written yet; retrying in %.2fs", len(retry), wait)
                sleep(wait)
            pending = retry


def consume(consumer: consumer_pb2_grpc.ConsumerServiceStub, topic: str, group: str,
            want: int) -> None:
    """Consumes through a Consume stream until want distinct message IDs have
    been handled: grants the gateway credit, and acks each frame's records in
    the stream after handling them, granting as much credit again. Starts a
    new stream if one ends."""
    seen: set[str] = set()
    attempt = 0
    window = 100  # records in hand at most
    while len(seen) < want:
        outbox: queue.Queue = queue.Queue()
        outbox.put(consumer_pb2.ConsumeRequest(start=consumer_pb2.ConsumeStart(
            subscription=consumer_pb2.SubscribeRequest(
                group=group, topics=[topic], ordering=consumer_pb2.ORDERING_KEY, max_in_flight=window),
            credit=consumer_pb2.Credit(records=window, bytes=16 << 20))))

        def requests():
            while (msg := outbox.get()) is not None:
                yield msg

        stream = consumer.Consume(requests())
        sent = answered = 0  # settles sent and answered: the stream ends only once all are answered
        try:
            for frame in stream:
                attempt = 0
                kind = frame.WhichOneof("frame")
                if kind == "assignment":
                    emit("assignment",
                         assigned=[f"{tp.topic}/{tp.partition}" for tp in frame.assignment.assigned],
                         revoked=[f"{tp.topic}/{tp.partition}" for tp in frame.assignment.revoked])
                elif kind == "settled":
                    answered = frame.settled.sequence
                    for i, outcome in enumerate(frame.settled.acks):
                        if outcome != consumer_pb2.SETTLE_OUTCOME_APPLIED:
                            # STALE: the partition moved or the lease ran out; the
                            # record is redelivered. PENDING: applied, its dedupe
                            # marker on its way.
                            log.warning("settle %d, ack %d: %s", frame.settled.sequence, i,
                                        consumer_pb2.SettleOutcome.Name(outcome))
                elif kind == "deliveries":
                    tokens, size = [], 0
                    for d in frame.deliveries.deliveries:
                        # Handle the record here; this app only reports it.
                        emit("consumed", message_id=d.message_id, partition=d.partition, offset=d.offset,
                             attempt=d.attempt, duplicate=d.message_id in seen, tombstone=is_tombstone(d))
                        seen.add(d.message_id)
                        tokens.append(d.token)
                        size += len(d.key) + len(d.value)
                    if tokens:
                        sent += 1
                        outbox.put(consumer_pb2.ConsumeRequest(settle=consumer_pb2.Settle(
                            sequence=sent, acks=tokens, credit=consumer_pb2.Credit(records=len(tokens), bytes=size))))
                if len(seen) >= want and answered == sent:
                    break
        except grpc.RpcError as err:
            if err.code() not in RETRYABLE:
                raise
            attempt += 1
            delay = retry_delay(rpc_status(err), attempt)
            log.warning("consume: %s; starting a new stream in %.2fs", err.code().name, delay)
            time.sleep(delay)
        finally:
            outbox.put(None)
            stream.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="127.0.0.1:7070",
                        help="gateway address: host:port or unix:///path/to/socket")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--produce", type=int, default=0, metavar="N", help="records to write first")
    parser.add_argument("--consume", type=int, default=0, metavar="N",
                        help="distinct records to handle before exiting")
    parser.add_argument("--batch", type=int, default=50, help="records per Produce call")
    parser.add_argument("--run-id", default=uuid.uuid4().hex, help="prefix of the idempotency keys")
    parser.add_argument("--tombstone-every", type=int, default=0, metavar="N",
                        help="make every Nth record a tombstone (no value); 0: none")
    args = parser.parse_args(argv)
    if args.produce < 0 or args.consume < 0 or args.tombstone_every < 0 or args.batch <= 0:
        parser.error("--produce, --consume and --tombstone-every must not be negative, --batch must be positive")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    with grpc.insecure_channel(args.target) as channel:
        if args.produce:
            produce(producer_pb2_grpc.ProducerServiceStub(channel), args.topic, args.produce,
                    args.batch, args.run_id, tombstone_every=args.tombstone_every)
        if args.consume:
            consume(consumer_pb2_grpc.ConsumerServiceStub(channel), args.topic, args.group, args.consume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
