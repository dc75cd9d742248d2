import datetime

from gateway.v1 import record_pb2 as _record_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ordering(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDERING_UNSPECIFIED: _ClassVar[Ordering]
    ORDERING_PARTITION: _ClassVar[Ordering]
    ORDERING_KEY: _ClassVar[Ordering]
    ORDERING_NONE: _ClassVar[Ordering]

class StartPosition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    START_POSITION_UNSPECIFIED: _ClassVar[StartPosition]
    START_POSITION_EARLIEST: _ClassVar[StartPosition]
    START_POSITION_LATEST: _ClassVar[StartPosition]

class SettleOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SETTLE_OUTCOME_UNSPECIFIED: _ClassVar[SettleOutcome]
    SETTLE_OUTCOME_APPLIED: _ClassVar[SettleOutcome]
    SETTLE_OUTCOME_STALE: _ClassVar[SettleOutcome]
    SETTLE_OUTCOME_ALREADY_ACKED: _ClassVar[SettleOutcome]
    SETTLE_OUTCOME_PENDING: _ClassVar[SettleOutcome]
ORDERING_UNSPECIFIED: Ordering
ORDERING_PARTITION: Ordering
ORDERING_KEY: Ordering
ORDERING_NONE: Ordering
START_POSITION_UNSPECIFIED: StartPosition
START_POSITION_EARLIEST: StartPosition
START_POSITION_LATEST: StartPosition
SETTLE_OUTCOME_UNSPECIFIED: SettleOutcome
SETTLE_OUTCOME_APPLIED: SettleOutcome
SETTLE_OUTCOME_STALE: SettleOutcome
SETTLE_OUTCOME_ALREADY_ACKED: SettleOutcome
SETTLE_OUTCOME_PENDING: SettleOutcome

class TopicPartition(_message.Message):
    __slots__ = ("topic", "partition")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("group", "topics", "ordering", "max_in_flight", "ack_timeout", "start_position", "max_attempts")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    ORDERING_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    ACK_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    START_POSITION_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    group: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    ordering: Ordering
    max_in_flight: int
    ack_timeout: _duration_pb2.Duration
    start_position: StartPosition
    max_attempts: int
    def __init__(self, group: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., ordering: _Optional[_Union[Ordering, str]] = ..., max_in_flight: _Optional[int] = ..., ack_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., start_position: _Optional[_Union[StartPosition, str]] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("deliveries", "assignment")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    deliveries: Deliveries
    assignment: Assignment
    def __init__(self, deliveries: _Optional[_Union[Deliveries, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ...) -> None: ...

class ConsumeRequest(_message.Message):
    __slots__ = ("start", "credit", "settle")
    START_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    SETTLE_FIELD_NUMBER: _ClassVar[int]
    start: ConsumeStart
    credit: Credit
    settle: Settle
    def __init__(self, start: _Optional[_Union[ConsumeStart, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., settle: _Optional[_Union[Settle, _Mapping]] = ...) -> None: ...

class ConsumeStart(_message.Message):
    __slots__ = ("subscription", "credit")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    subscription: SubscribeRequest
    credit: Credit
    def __init__(self, subscription: _Optional[_Union[SubscribeRequest, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("records", "bytes")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    records: int
    bytes: int
    def __init__(self, records: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class Settle(_message.Message):
    __slots__ = ("sequence", "acks", "nacks", "retry_after", "dead_letter", "reason", "extends", "extension", "credit")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    NACKS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXTENDS_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    acks: _containers.RepeatedScalarFieldContainer[int]
    nacks: _containers.RepeatedScalarFieldContainer[int]
    retry_after: _duration_pb2.Duration
    dead_letter: bool
    reason: str
    extends: _containers.RepeatedScalarFieldContainer[int]
    extension: _duration_pb2.Duration
    credit: Credit
    def __init__(self, sequence: _Optional[int] = ..., acks: _Optional[_Iterable[int]] = ..., nacks: _Optional[_Iterable[int]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., dead_letter: _Optional[bool] = ..., reason: _Optional[str] = ..., extends: _Optional[_Iterable[int]] = ..., extension: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ...) -> None: ...

class ConsumeResponse(_message.Message):
    __slots__ = ("deliveries", "assignment", "settled")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    deliveries: Deliveries
    assignment: Assignment
    settled: Settled
    def __init__(self, deliveries: _Optional[_Union[Deliveries, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., settled: _Optional[_Union[Settled, _Mapping]] = ...) -> None: ...

class Settled(_message.Message):
    __slots__ = ("sequence", "acks", "nacks", "extends", "ack_deadlines")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    NACKS_FIELD_NUMBER: _ClassVar[int]
    EXTENDS_FIELD_NUMBER: _ClassVar[int]
    ACK_DEADLINES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    acks: _containers.RepeatedScalarFieldContainer[SettleOutcome]
    nacks: _containers.RepeatedScalarFieldContainer[SettleOutcome]
    extends: _containers.RepeatedScalarFieldContainer[SettleOutcome]
    ack_deadlines: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    def __init__(self, sequence: _Optional[int] = ..., acks: _Optional[_Iterable[_Union[SettleOutcome, str]]] = ..., nacks: _Optional[_Iterable[_Union[SettleOutcome, str]]] = ..., extends: _Optional[_Iterable[_Union[SettleOutcome, str]]] = ..., ack_deadlines: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ...) -> None: ...

class Deliveries(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("assigned", "revoked")
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    assigned: _containers.RepeatedCompositeFieldContainer[TopicPartition]
    revoked: _containers.RepeatedCompositeFieldContainer[TopicPartition]
    def __init__(self, assigned: _Optional[_Iterable[_Union[TopicPartition, _Mapping]]] = ..., revoked: _Optional[_Iterable[_Union[TopicPartition, _Mapping]]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("ack_id", "topic", "partition", "offset", "key", "value", "headers", "timestamp", "message_id", "attempt", "ack_deadline", "token")
    ACK_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ACK_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ack_id: str
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: _containers.RepeatedCompositeFieldContainer[_record_pb2.Header]
    timestamp: _timestamp_pb2.Timestamp
    message_id: str
    attempt: int
    ack_deadline: _timestamp_pb2.Timestamp
    token: int
    def __init__(self, ack_id: _Optional[str] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[_record_pb2.Header, _Mapping]]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message_id: _Optional[str] = ..., attempt: _Optional[int] = ..., ack_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., token: _Optional[int] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("group", "ack_ids")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ACK_IDS_FIELD_NUMBER: _ClassVar[int]
    group: str
    ack_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., ack_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NackRequest(_message.Message):
    __slots__ = ("group", "ack_ids", "retry_after", "dead_letter", "reason")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ACK_IDS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    group: str
    ack_ids: _containers.RepeatedScalarFieldContainer[str]
    retry_after: _duration_pb2.Duration
    dead_letter: bool
    reason: str
    def __init__(self, group: _Optional[str] = ..., ack_ids: _Optional[_Iterable[str]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., dead_letter: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class NackResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ("group", "ack_ids", "extension")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ACK_IDS_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    group: str
    ack_ids: _containers.RepeatedScalarFieldContainer[str]
    extension: _duration_pb2.Duration
    def __init__(self, group: _Optional[str] = ..., ack_ids: _Optional[_Iterable[str]] = ..., extension: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ExtendResponse(_message.Message):
    __slots__ = ("ack_deadlines",)
    ACK_DEADLINES_FIELD_NUMBER: _ClassVar[int]
    ack_deadlines: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    def __init__(self, ack_deadlines: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ...) -> None: ...
