package produce

import (
	"errors"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/kafkaclient"
	"github.com/kafkagate/gateway/internal/rdkafka"
)

// engine is the librdkafka producer handle as the producer uses it: the
// gateway's binding in production (*rdkafka.Producer), a fake in the tests
// of the enqueuing and reporting logic. Produce is called by one goroutine
// at a time (the enqueuer's), Poll and Events by the poller only.
type engine interface {
	Produce(topic string, msgs []rdkafka.Message) (int, error)
	Poll(timeout time.Duration, out []rdkafka.Report) []rdkafka.Report
	Events() (logs []rdkafka.LogLine, stats []string, errs []rdkafka.ClientError)
	Partitions(topic string, timeout time.Duration) (int32, error)
	Brokers(timeout time.Duration) (int, error)
	Len() int
	Flush(timeout time.Duration) int
	Purge(inFlight bool) error
	Close()
}

var _ engine = (*rdkafka.Producer)(nil)

// kafkaError turns a librdkafka error code into the Go client's error
// type, which kafkaclient classifies: both are rd_kafka_resp_err_t.
func kafkaError(code rdkafka.ErrorCode, msg string) error {
	return kafka.NewError(kafka.ErrorCode(code), msg, false)
}

// classifyProduce classifies an error of the binding (a refused enqueue, a
// failed metadata request) into the kafkaclient kinds.
func classifyProduce(err error) error {
	var rerr *rdkafka.Error
	if errors.As(err, &rerr) {
		return kafkaclient.Classify(kafkaError(rerr.Code, rerr.Message))
	}
	return err
}

// classifyReport is the error of a failed delivery report.
func classifyReport(r *rdkafka.Report) error {
	return kafkaclient.Classify(kafkaError(r.Err, ""))
}

func isQueueFull(err error) bool {
	var rerr *rdkafka.Error
	return errors.As(err, &rerr) && rerr.Code == rdkafka.ErrQueueFull
}
