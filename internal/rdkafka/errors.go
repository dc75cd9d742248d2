package rdkafka

// ErrorCode is librdkafka's rd_kafka_resp_err_t: negative values are the
// client's own (local) errors, positive ones are Kafka protocol errors a
// broker answered. String gives librdkafka's name for it (rd_kafka_err2name).
//
// The constants are the codes a producer's reports, its produce calls, its
// metadata requests and its client errors can carry. Their values are those
// of librdkafka 2.11.1; the layout test checks each one against the header.
type ErrorCode int32

// Codes of the client itself.
const (
	ErrBadMsg             ErrorCode = -199 // a message could not be parsed or built
	ErrBadCompression     ErrorCode = -198 // a message could not be compressed or decompressed
	ErrDestroy            ErrorCode = -197 // the handle is being destroyed (or is closed)
	ErrFail               ErrorCode = -196 // a generic local failure
	ErrTransport          ErrorCode = -195 // a broker connection failed
	ErrCritSysResource    ErrorCode = -194 // out of a critical system resource (memory, threads)
	ErrResolve            ErrorCode = -193 // a broker address could not be resolved
	ErrMsgTimedOut        ErrorCode = -192 // message.timeout.ms passed before the message was acknowledged
	ErrUnknownPartition   ErrorCode = -190 // the partition does not exist in the topic
	ErrUnknownTopic       ErrorCode = -188 // the topic is not known to the cluster
	ErrAllBrokersDown     ErrorCode = -187 // every broker connection is down (informational)
	ErrInvalidArg         ErrorCode = -186 // an invalid argument or configuration
	ErrTimedOut           ErrorCode = -185 // a call's own timeout passed
	ErrQueueFull          ErrorCode = -184 // the local queue is full (queue.buffering.max.messages or .kbytes)
	ErrSSL                ErrorCode = -181 // a TLS failure
	ErrState              ErrorCode = -172 // the call is not allowed in the client's state
	ErrAuthentication     ErrorCode = -169 // SASL or TLS authentication failed
	ErrTimedOutQueue      ErrorCode = -166 // a request timed out while still queued locally
	ErrUnsupportedFeature ErrorCode = -165 // the broker does not support a needed feature
	ErrPurgeQueue         ErrorCode = -152 // purged before it was sent (Purge)
	ErrPurgeInflight      ErrorCode = -151 // purged while in flight: it may have been written (Purge)
	ErrFatal              ErrorCode = -150 // a fatal error was raised; the handle is unusable
	ErrInconsistent       ErrorCode = -149 // an inconsistent state was detected
	ErrGaplessGuarantee   ErrorCode = -148 // proceeding would break gap-less ordering (idempotence)
	ErrUnknownBroker      ErrorCode = -146 // the broker is not known
	ErrFenced             ErrorCode = -144 // the producer instance was fenced
	ErrAssignPartitions   ErrorCode = -175 // a rebalance event: partitions to assign
	ErrRevokePartitions   ErrorCode = -174 // a rebalance event: partitions to revoke
	ErrNoOffset           ErrorCode = -168 // no offset to commit
)

// Codes a broker answered.
const (
	ErrUnknown                            ErrorCode = -1  // the broker answered an unknown error
	ErrNoError                            ErrorCode = 0   // success
	ErrInvalidMsg                         ErrorCode = 2   // the broker found the message corrupt
	ErrUnknownTopicOrPart                 ErrorCode = 3   // the broker does not host this topic or partition
	ErrInvalidMsgSize                     ErrorCode = 4   // the message has an invalid size
	ErrLeaderNotAvailable                 ErrorCode = 5   // no leader for the partition (for example, being created)
	ErrNotLeaderForPartition              ErrorCode = 6   // the broker is no longer the partition's leader
	ErrRequestTimedOut                    ErrorCode = 7   // the broker timed the request out
	ErrBrokerNotAvailable                 ErrorCode = 8   // the broker is not available
	ErrReplicaNotAvailable                ErrorCode = 9   // a replica is not available
	ErrMsgSizeTooLarge                    ErrorCode = 10  // larger than message.max.bytes (client) or the broker's limit
	ErrNetworkException                   ErrorCode = 13  // the broker lost a connection it needed
	ErrTopicException                     ErrorCode = 17  // the topic name is invalid
	ErrRecordListTooLarge                 ErrorCode = 18  // the batch is larger than the broker's segment
	ErrNotEnoughReplicas                  ErrorCode = 19  // fewer in-sync replicas than min.insync.replicas
	ErrNotEnoughReplicasAfterAppend       ErrorCode = 20  // written, but fewer in-sync replicas than required
	ErrInvalidRequiredAcks                ErrorCode = 21  // the acks setting is invalid
	ErrTopicAuthorizationFailed           ErrorCode = 29  // not allowed to write the topic
	ErrClusterAuthorizationFailed         ErrorCode = 31  // not allowed by the cluster (for example, idempotent write)
	ErrInvalidTimestamp                   ErrorCode = 32  // the timestamp is outside the broker's accepted range
	ErrUnsupportedVersion                 ErrorCode = 35  // the broker does not support the request version
	ErrPolicyViolation                    ErrorCode = 44  // refused by a broker policy
	ErrOutOfOrderSequenceNumber           ErrorCode = 45  // the idempotent sequence is out of order
	ErrDuplicateSequenceNumber            ErrorCode = 46  // the idempotent sequence was already written
	ErrInvalidProducerEpoch               ErrorCode = 47  // the producer epoch is stale
	ErrInvalidProducerIDMapping           ErrorCode = 49  // the producer ID is not known to the broker
	ErrTransactionalIDAuthorizationFailed ErrorCode = 53  // not allowed to use the transactional ID
	ErrKafkaStorageError                  ErrorCode = 56  // the broker's disk failed
	ErrSASLAuthenticationFailed           ErrorCode = 58  // SASL authentication failed
	ErrUnknownProducerID                  ErrorCode = 59  // the broker no longer knows the producer ID
	ErrFencedLeaderEpoch                  ErrorCode = 74  // the leader epoch is older than the broker's
	ErrUnknownLeaderEpoch                 ErrorCode = 75  // the leader epoch is newer than the broker's
	ErrUnsupportedCompressionType         ErrorCode = 76  // the broker does not support the compression
	ErrInvalidRecord                      ErrorCode = 87  // the broker refused the record (for example, compaction without a key)
	ErrThrottlingQuotaExceeded            ErrorCode = 89  // a quota was exceeded
	ErrProducerFenced                     ErrorCode = 90  // another producer with the same transactional ID took over
	ErrUnknownTopicID                     ErrorCode = 100 // the topic ID is not known to the broker
)

// Error is a failure librdkafka reported: its code and its description.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Message
}

// PersistStatus tells whether a reported message was written
// (rd_kafka_message_status).
type PersistStatus int32

const (
	// NotPersisted: the message was certainly not written (it never left,
	// or the broker refused it).
	NotPersisted PersistStatus = 0
	// PossiblyPersisted: the message was sent, but no answer says whether
	// it was written (a timeout or purge while in flight, a lost connection).
	PossiblyPersisted PersistStatus = 1
	// Persisted: the broker acknowledged the message.
	Persisted PersistStatus = 2
)

func (s PersistStatus) String() string {
	switch s {
	case NotPersisted:
		return "not persisted"
	case PossiblyPersisted:
		return "possibly persisted"
	case Persisted:
		return "persisted"
	}
	return "unknown persist status"
}
