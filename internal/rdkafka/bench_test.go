package rdkafka

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kafkagate/gateway/internal/testenv"
)

// The gateway's shape of record: a 100-byte value, no key, a 36-byte
// message-id header, an opaque; batches of 1,000; an idempotent producer.
const (
	benchBatch     = 1000
	benchValueSize = 100
)

var benchProps = map[string]string{
	"enable.idempotence": "true",
	"acks":               "all",
	"linger.ms":          "5",
	"partitioner":        "murmur2_random",
}

// cpuTime is the CPU time the process has used, every thread included
// (librdkafka's too).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProduce measures the produce path against the real broker: one
// op is one record, enqueued in batches of 1,000 with one Produce call each,
// its report taken by a Poll loop in bulk. It reports records/s and the CPU
// time of the whole process per record (librdkafka's threads included);
// allocs/op is allocations per record.
func BenchmarkProduce(b *testing.B) {
	boot := testenv.Kafka(b)
	topic := testenv.CreateTopic(b, boot, 3)
	props := map[string]string{"bootstrap.servers": boot}
	for k, v := range benchProps {
		props[k] = v
	}
	p, err := NewProducer(props)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	value := make([]byte, benchValueSize)
	msgs := make([]Message, benchBatch)
	for i := range msgs {
		msgs[i] = Message{Partition: PartitionAny, Value: value,
			Headers: []Header{{Key: "message-id", Value: []byte(fmt.Sprintf("%036d", i))}}}
	}
	// Warm up: the topic's metadata, the connections, the buffers.
	if n, err := p.Produce(topic, msgs[:10]); n != 10 || err != nil {
		b.Fatalf("Produce = %d, %v", n, err)
	}
	if left := p.Flush(30 * time.Second); left != 0 {
		b.Fatalf("%d left after the warm-up", left)
	}
	p.Poll(0, nil)

	reported := make(chan int)
	stop := make(chan struct{})
	go func() {
		reps := make([]Report, 0, 4*benchBatch)
		total, failed := 0, 0
		for {
			select {
			case <-stop:
				reported <- total
				return
			default:
			}
			reps = p.Poll(10*time.Millisecond, reps[:0])
			for _, r := range reps {
				if r.Err != ErrNoError {
					failed++
				}
			}
			total += len(reps)
			if failed > 0 {
				panic(fmt.Sprintf("%d records failed", failed))
			}
		}
	}()

	b.ReportAllocs()
	b.ResetTimer()
	cpu0, start := cpuTime(), time.Now()
	for sent := 0; sent < b.N; {
		k := min(benchBatch, b.N-sent)
		for i := range k {
			msgs[i].Opaque = uint64(sent + i)
		}
		rest := msgs[:k]
		for len(rest) > 0 {
			n, err := p.Produce(topic, rest)
			rest = rest[n:]
			var e *Error
			if errors.As(err, &e) && e.Code == ErrQueueFull {
				time.Sleep(time.Millisecond)
			} else if err != nil {
				b.Fatal(err)
			}
		}
		sent += k
	}
	if left := p.Flush(time.Minute); left != 0 {
		b.Fatalf("%d not delivered after a minute", left)
	}
	close(stop)
	total := <-reported
	total += len(p.Poll(0, nil))
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if total != b.N {
		b.Fatalf("%d reports for %d records", total, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/record")
}

// BenchmarkEnqueue measures the Produce call alone (packing, the cgo call,
// librdkafka's enqueue), with no broker to deliver to: one op is one record
// of the gateway's shape, in batches of 1,000. Queued records are purged
// every 100 batches.
func BenchmarkEnqueue(b *testing.B) {
	p, err := NewProducer(map[string]string{"bootstrap.servers": "127.0.0.1:1",
		"queue.buffering.max.messages": "200000", "log_level": "0"})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	value := make([]byte, benchValueSize)
	msgs := make([]Message, benchBatch)
	for i := range msgs {
		msgs[i] = Message{Partition: PartitionAny, Value: value,
			Headers: []Header{{Key: "message-id", Value: []byte(fmt.Sprintf("%036d", i))}}}
	}
	var reps []Report
	b.ReportAllocs()
	b.ResetTimer()
	for sent, batches := 0, 0; sent < b.N; batches++ {
		k := min(benchBatch, b.N-sent)
		if n, err := p.Produce("t", msgs[:k]); n != k || err != nil {
			b.Fatalf("Produce = %d, %v", n, err)
		}
		sent += k
		if batches%100 == 99 {
			b.StopTimer()
			if err := p.Purge(false); err != nil {
				b.Fatal(err)
			}
			for p.Len() > 0 {
				reps = p.Poll(10*time.Millisecond, reps[:0])
			}
			b.StartTimer()
		}
	}
}

// BenchmarkProduceConfluentKafkaGo is the same load through
// confluent-kafka-go's Produce, record by record, with the header and an
// Opaque, its reports read from the Events channel: the baseline of
// BenchmarkProduce.
func BenchmarkProduceConfluentKafkaGo(b *testing.B) {
	boot := testenv.Kafka(b)
	topic := testenv.CreateTopic(b, boot, 3)
	cm := kafka.ConfigMap{"bootstrap.servers": boot}
	for k, v := range benchProps {
		cm[k] = v
	}
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	value := make([]byte, benchValueSize)
	header := []kafka.Header{{Key: "message-id", Value: []byte(fmt.Sprintf("%036d", 0))}}
	tp := kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}
	reported := make(chan int)
	go func() {
		total := 0
		for ev := range p.Events() {
			if m, ok := ev.(*kafka.Message); ok {
				if m.TopicPartition.Error != nil {
					panic(m.TopicPartition.Error)
				}
				total++
				if total == b.N {
					reported <- total
				}
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, start := cpuTime(), time.Now()
	for i := range b.N {
		for {
			err := p.Produce(&kafka.Message{TopicPartition: tp, Value: value, Headers: header, Opaque: i}, nil)
			if err == nil {
				break
			}
			if kerr, ok := err.(kafka.Error); ok && kerr.Code() == kafka.ErrQueueFull {
				time.Sleep(time.Millisecond)
				continue
			}
			b.Fatal(err)
		}
	}
	select {
	case <-reported:
	case <-time.After(time.Minute):
		b.Fatal("not every record reported after a minute")
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/record")
}
