package consume

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Assignment reports partitions gained or lost by this gateway.
type Assignment struct {
	Assigned []TopicPartition
	Revoked  []TopicPartition
}

// Delivery is one record handed to an app.
type Delivery struct {
	AckID     string
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
	// MessageID is the record's message ID, or "" when it carries none:
	// its ID is then "topic/partition/offset" (see ID).
	MessageID string
	Attempt   int32
	// AckDeadline is when the delivery's lease ends (see the proto's
	// Delivery.ack_deadline).
	AckDeadline time.Time
	// Token names the delivery within its Consume stream, for the
	// stream's Settle (0 on Subscribe streams, which use AckID).
	Token uint64
}

// ID is d's message ID, spelled out when the record carries none.
func (d *Delivery) ID() string {
	if d.MessageID != "" {
		return d.MessageID
	}
	return recordID(d.Topic, d.Partition, d.Offset)
}

// Frame is what a stream sends next: either deliveries or an assignment.
type Frame struct {
	Deliveries []Delivery
	Assignment *Assignment
}

// Stream is one app stream attached to a group. Frames come out of Next in
// the order the group made them. All fields are guarded by the group's mutex
// except notify.
type Stream struct {
	g           *group
	maxInFlight int
	holding     int          // records it holds: claiming or in flight (kept by partitionLog)
	frames      []Frame      // made, not yet taken by Next
	tailBytes   int          // the sizes (deliverySize) of the last frame's deliveries
	spares      [][]Delivery // taken frames' deliveries, given back for the next frames
	ended       bool         // the group shut down
	notify      chan struct{}
	rate        *rate.Limiter // deliveries per second; nil: unbounded
	// limited caches rateLimited() for the length of a dispatch (the
	// limiter takes a lock to tell), and unpaid counts the deliveries made
	// since then whose tokens flush takes.
	limited bool
	unpaid  int

	// A Consume stream is credited: it is sent records only within the
	// credit its app granted (records and bytes; a record is sent while
	// the byte credit is positive, so the last may overdraw it), and its
	// deliveries are named by tokens instead of signed ack IDs.
	credited      bool
	creditRecords int64
	creditBytes   int64
	// tokens names the deliveries the stream holds (at most max_in_flight),
	// meaningful only within this stream, so no other stream or call can
	// name them.
	tokens *tokenTable
}

// maxCredit bounds the credit a stream may accumulate.
const maxCredit = 1 << 50

// newStream makes a stream for g; credited makes it a Consume stream.
func newStream(g *group, maxInFlight int, lim *rate.Limiter, credited bool) *Stream {
	s := &Stream{g: g, maxInFlight: maxInFlight, notify: make(chan struct{}, 1), rate: lim, credited: credited}
	if credited {
		s.tokens = newTokenTable()
		s.maxInFlight = min(s.maxInFlight, maxTokenSlots)
	}
	return s
}

// letGo ends s's hold of r (its state no longer holds credit). A record
// that never reached the app (its claim not yet won, or taken back unsent)
// gives its credit back.
func (s *Stream) letGo(r *record, unsent bool) {
	s.holding--
	r.stream = nil
	if r.token != 0 {
		s.tokens.drop(r.token)
		r.token = 0
	}
	if unsent && s.credited {
		s.creditRecords++
		s.creditBytes += int64(r.size)
	}
}

// issue names a delivery of r held by s with a new token, if s is a
// Consume stream.
func (s *Stream) issue(r *record, id AckID) uint64 {
	if s.tokens == nil {
		return 0
	}
	r.token = s.tokens.issue(id)
	return r.token
}

// Grant adds to a Consume stream's credit: records and bytes more the
// gateway may send it.
func (s *Stream) Grant(records, bytes int64) {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	s.creditRecords = min(s.creditRecords+max(records, 0), maxCredit)
	s.creditBytes = min(s.creditBytes+max(bytes, 0), maxCredit)
	g.dispatchLocked()
}

// credit is how many records the stream may take now: its room under
// max_in_flight, and under its delivery rate the tokens it has.
func (s *Stream) credit() int {
	c := s.maxInFlight - s.holding
	if s.credited {
		if s.creditBytes <= 0 {
			return 0
		}
		c = int(min(int64(c), s.creditRecords))
	}
	if s.limited {
		c = min(c, int(s.rate.Tokens())-s.unpaid)
	}
	return max(c, 0)
}

func (s *Stream) rateLimited() bool { return s.rate != nil && s.rate.Limit() != rate.Inf }

// untilToken is how long until a rate-limited stream has a token again.
func (s *Stream) untilToken() time.Duration {
	missing := 1 - s.rate.Tokens()
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(s.rate.Limit()) * float64(time.Second))
}

// A Deliveries frame is bounded so that any gRPC client can receive it
// within its default limit on message size (4 MiB): it takes deliveries
// after its first only while their sizes (deliverySize) stay within
// maxFrameBytes, so a record larger than that travels alone.
const (
	maxFrameBytes = 1 << 20
	maxSpares     = 4 // deliveries slices kept for reuse per stream
)

// deliverySize is what d adds to an encoded frame, near enough: its key,
// value and headers, its names and the fixed fields.
func deliverySize(d *Delivery) int {
	id := len(d.MessageID)
	if id == 0 {
		id = RecordIDLen(d.Topic, d.Partition, d.Offset)
	}
	n := 64 + len(d.AckID) + len(d.Topic) + len(d.Key) + len(d.Value) + id
	for _, h := range d.Headers {
		n += 8 + len(h.Key) + len(h.Value)
	}
	return n
}

// add queues a delivery, merging it into a trailing Deliveries frame that
// has room for it.
func (s *Stream) add(d Delivery) {
	if s.limited {
		s.unpaid++
	}
	size := deliverySize(&d)
	if n := len(s.frames); n > 0 && s.frames[n-1].Assignment == nil {
		f := &s.frames[n-1]
		if s.tailBytes+size <= maxFrameBytes {
			f.Deliveries = append(f.Deliveries, d)
			s.tailBytes += size
			return
		}
	}
	var ds []Delivery
	if n := len(s.spares); n > 0 {
		ds = s.spares[n-1]
		s.spares[n-1] = nil
		s.spares = s.spares[:n-1]
	} else {
		ds = make([]Delivery, 0, 16)
	}
	s.frames = append(s.frames, Frame{Deliveries: append(ds, d)})
	s.tailBytes = size
}

// Recycle gives back the deliveries of a frame taken from Next, once the
// caller has copied what it needs: a later frame is built in them instead
// of a new slice. The caller must not use ds afterwards.
func (s *Stream) Recycle(ds []Delivery) {
	if cap(ds) == 0 {
		return
	}
	clear(ds) // no references to records' keys and values stay behind
	s.g.mu.Lock()
	if len(s.spares) < maxSpares {
		s.spares = append(s.spares, ds[:0])
	}
	s.g.mu.Unlock()
}

func (s *Stream) pushAssignment(a Assignment) {
	if len(a.Assigned) == 0 && len(a.Revoked) == 0 {
		return
	}
	s.frames = append(s.frames, Frame{Assignment: &a})
	s.flush()
}

// dropUnsent removes queued deliveries of the given partitions' logs (being
// revoked or repositioned) and returns them: they were never seen by the
// app, and their new owner delivers them.
func (s *Stream) dropUnsent(logs []*partitionLog) []Delivery {
	revoked := func(d Delivery) bool {
		for _, l := range logs {
			if d.Topic == l.topic && d.Partition == l.partition {
				return true
			}
		}
		return false
	}
	var dropped []Delivery
	kept := s.frames[:0]
	for _, f := range s.frames {
		if f.Assignment == nil {
			ds := f.Deliveries[:0]
			for _, d := range f.Deliveries {
				if revoked(d) {
					dropped = append(dropped, d)
				} else {
					ds = append(ds, d)
				}
			}
			if len(ds) == 0 {
				continue
			}
			f.Deliveries = ds
		}
		kept = append(kept, f)
	}
	clear(s.frames[len(kept):])
	s.frames = kept
	return dropped
}

// flush takes the delivery rate's tokens of the deliveries just made, and
// wakes Next when frames wait.
func (s *Stream) flush() {
	if s.unpaid > 0 {
		s.pay(s.unpaid)
		s.unpaid = 0
	}
	if len(s.frames) > 0 || s.ended {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// pay takes n tokens from the delivery rate, going into debt when it has
// fewer (deliveries the dedupe path makes once a late claim is won are not
// bounded by the tokens of their dispatch): the stream then gets nothing
// until the debt is paid back. The limiter reserves at most its burst at a
// time, so a larger n is taken in bursts.
func (s *Stream) pay(n int) {
	now, burst := time.Now(), s.rate.Burst()
	if burst <= 0 {
		return // such a limiter lets nothing through: credit is 0 anyway
	}
	for n > 0 {
		k := min(n, burst)
		s.rate.ReserveN(now, k)
		n -= k
	}
}

func (s *Stream) end() {
	s.ended = true
	s.flush()
}

// Next returns the next frame, waiting for one. It fails with ErrClosed
// when the group shuts down, or with ctx's error.
func (s *Stream) Next(ctx context.Context) (Frame, error) {
	for {
		s.g.mu.Lock()
		if len(s.frames) > 0 {
			f := s.frames[0]
			s.frames[0] = Frame{}
			s.frames = s.frames[1:]
			s.g.mu.Unlock()
			return f, nil
		}
		ended := s.ended
		s.g.mu.Unlock()
		if ended {
			return Frame{}, ErrClosed
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Frame{}, ctx.Err()
		case <-s.g.done:
			return Frame{}, ErrClosed
		}
	}
}

// Close detaches the stream; its unacknowledged records are redelivered to
// the group's other streams, or to the next stream that attaches. Acks of
// them stay valid while this gateway owns their partitions.
func (s *Stream) Close() {
	s.g.detach(s)
}
