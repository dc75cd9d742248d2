"""Tests of the example's retry rules against an in-process gRPC server that
throttles the way the gateway does: RESOURCE_EXHAUSTED with a RetryInfo.

    PYTHONPATH=gen/python:examples/python python -m unittest discover -s examples/python
"""

import unittest
from concurrent import futures
from datetime import timedelta

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

import app
from gateway.v1 import consumer_pb2, producer_pb2, producer_pb2_grpc


def throttled(delay: timedelta, message: str) -> status_pb2.Status:
    detail = any_pb2.Any()
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromTimedelta(delay)
    detail.Pack(retry)
    return status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=[detail])


class ThrottlingProducer(producer_pb2_grpc.ProducerServiceServicer):
    """Refuses the first call whole, fails the second record of the second
    call, and accepts everything after that."""

    def __init__(self):
        self.requests = []

    def Produce(self, request, context):
        self.requests.append(request)
        if len(self.requests) == 1:
            status = throttled(timedelta(milliseconds=1500), "rate limited")
            context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, status.message)
        results = []
        for i, record in enumerate(request.records):
            if len(self.requests) == 2 and i == 1:
                results.append(producer_pb2.RecordResult(
                    message_id=record.idempotency_key, error=throttled(timedelta(milliseconds=250), "queue full")))
                continue
            results.append(producer_pb2.RecordResult(partition=0, offset=i, message_id=record.idempotency_key))
        return producer_pb2.ProduceResponse(results=results)


class RetryTest(unittest.TestCase):
    def setUp(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.servicer = ThrottlingProducer()
        producer_pb2_grpc.add_ProducerServiceServicer_to_server(self.servicer, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def tearDown(self):
        self.channel.close()
        self.server.stop(None)

    def test_produce_waits_the_retry_delay_the_gateway_asks_for_and_resends_only_failed_records(self):
        sleeps = []
        app.produce(producer_pb2_grpc.ProducerServiceStub(self.channel), "orders", 3, 10, "run",
                    sleep=sleeps.append)
        self.assertEqual(sleeps, [1.5, 0.25])
        keys = [[r.idempotency_key for r in req.records] for req in self.servicer.requests]
        self.assertEqual(keys, [["run-0", "run-1", "run-2"], ["run-0", "run-1", "run-2"], ["run-1"]])

    def test_retry_delay_backs_off_when_the_gateway_gives_no_delay(self):
        bare = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED)
        self.assertEqual([app.retry_delay(bare, n) for n in (1, 2, 3)], [0.1, 0.2, 0.4])
        self.assertEqual(app.retry_delay(None, 10), 5.0)

    def test_errors_that_retrying_cannot_fix_are_raised_at_once(self):
        calls = []

        def invalid():
            calls.append(1)
            raise FakeError(grpc.StatusCode.INVALID_ARGUMENT)

        with self.assertRaises(grpc.RpcError):
            app.with_retry(invalid, "produce", sleep=lambda _: self.fail("slept"))
        self.assertEqual(len(calls), 1)


class AcceptingProducer(producer_pb2_grpc.ProducerServiceServicer):
    """Accepts every record and keeps the requests as the server decoded them."""

    def __init__(self):
        self.requests = []

    def Produce(self, request, context):
        self.requests.append(request)
        return producer_pb2.ProduceResponse(results=[
            producer_pb2.RecordResult(partition=0, offset=i, message_id=r.idempotency_key)
            for i, r in enumerate(request.records)])


class TombstoneTest(unittest.TestCase):
    """A tombstone reaches the gateway with its key and no value (unset, not
    empty), and a consumer tells it from a record whose value is empty."""

    def setUp(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.servicer = AcceptingProducer()
        producer_pb2_grpc.add_ProducerServiceServicer_to_server(self.servicer, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def tearDown(self):
        self.channel.close()
        self.server.stop(None)

    def test_every_nth_record_is_sent_without_a_value(self):
        app.produce(producer_pb2_grpc.ProducerServiceStub(self.channel), "orders", 4, 10, "run",
                    sleep=self.fail, tombstone_every=2)
        (request,) = self.servicer.requests
        self.assertEqual([r.HasField("value") for r in request.records], [True, False, True, False])
        self.assertEqual([r.key for r in request.records],
                         [b"customer-0", b"customer-1", b"customer-2", b"customer-3"])

    def test_a_delivery_without_a_value_is_a_tombstone_and_an_empty_value_is_not(self):
        def decoded(**fields):
            return consumer_pb2.Delivery.FromString(consumer_pb2.Delivery(key=b"k", **fields).SerializeToString())

        self.assertTrue(app.is_tombstone(decoded()))
        self.assertFalse(app.is_tombstone(decoded(value=b"")))
        self.assertFalse(app.is_tombstone(decoded(value=b"x")))


class FakeError(grpc.RpcError):
    def __init__(self, code):
        super().__init__()
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return self._code.name

    def trailing_metadata(self):
        return ()


if __name__ == "__main__":
    unittest.main()
