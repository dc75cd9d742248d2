package produce

import (
	"sync"

	"github.com/kafkagate/gateway/internal/rdkafka"
)

// enqueuer hands records to librdkafka, coalescing the batches of calls
// made at the same time into one cgo call per topic (group commit): the
// first caller to find the enqueuer idle enqueues at once, its own batch and
// whatever other calls queued meanwhile, so a lone call waits for nothing
// and many concurrent single-record calls share the cost of the call into
// librdkafka.
type enqueuer struct {
	eng      engine
	stopping <-chan struct{}

	mu    sync.Mutex
	queue []*send
	busy  bool
}

// send is one call's batch on its way into librdkafka.
type send struct {
	topic string
	msgs  []rdkafka.Message
	wait  queueWait
	// Set by the enqueuer before done is closed: how many messages, from
	// the first, went in; when fewer than all, err is why the next one did
	// not (and the rest were not tried: they could overtake it).
	n   int
	err error
	// done is closed once the send is settled, when it was queued behind
	// another caller's enqueue (nil otherwise: its own caller settled it).
	done chan struct{}
}

// enqueue returns once s is settled (s.n and s.err set).
func (q *enqueuer) enqueue(s *send) {
	q.mu.Lock()
	if q.busy {
		s.done = make(chan struct{})
		q.queue = append(q.queue, s)
		q.mu.Unlock()
		<-s.done
		return
	}
	q.queue = append(q.queue, s)
	q.busy = true
	for {
		work := q.queue
		q.queue = nil
		q.mu.Unlock()
		q.run(work)
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.busy = false
			q.mu.Unlock()
			return
		}
	}
}

// run enqueues the sends of work, one cgo call per run of consecutive
// sends to the same topic, and settles each.
func (q *enqueuer) run(work []*send) {
	var msgs []rdkafka.Message
	for i := 0; i < len(work); {
		j := i + 1
		for j < len(work) && work[j].topic == work[i].topic {
			j++
		}
		group := work[i:j]
		if len(group) == 1 {
			q.enqueueGroup(group, group[0].msgs)
		} else {
			msgs = msgs[:0]
			for _, s := range group {
				msgs = append(msgs, s.msgs...)
			}
			q.enqueueGroup(group, msgs)
		}
		i = j
	}
	for _, s := range work {
		if s.done != nil {
			close(s.done)
		}
	}
}

// enqueueGroup enqueues msgs, the sends' messages back to back, in as few
// cgo calls as it can: one, unless librdkafka refuses a message. While the
// queue is full it retries, within the wait of the send that owns the
// refused message; a send whose message is refused for another reason, or
// whose wait ran out, stops there (its later messages are not tried: they
// could overtake it), and the next send goes on.
func (q *enqueuer) enqueueGroup(group []*send, msgs []rdkafka.Message) {
	topic := group[0].topic
	k, lo := 0, 0 // the send that owns msgs[at], and its first index
	for _, s := range group {
		s.n = len(s.msgs)
	}
	for at := 0; at < len(msgs); {
		n, err := q.eng.Produce(topic, msgs[at:])
		at += n
		if err == nil {
			return
		}
		for at >= lo+len(group[k].msgs) {
			lo += len(group[k].msgs)
			k++
		}
		s := group[k]
		if isQueueFull(err) {
			if werr := s.wait.sleep(q.stopping); werr == nil {
				continue
			} else {
				err = werr
			}
		} else {
			err = classifyProduce(err)
		}
		s.n, s.err = at-lo, err
		at = lo + len(s.msgs)
	}
}
