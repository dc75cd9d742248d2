package rdkafka

/*
#cgo CFLAGS: -O2 -Wall
// The hot call neither keeps a Go pointer nor calls back into Go.
#cgo noescape gw_consume
#cgo nocallback gw_consume

#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "api.h"
#include "state.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

// gw_release_free_memory gives the free memory of glibc's malloc arenas back
// to the system. librdkafka allocates fetched data on its broker threads
// and the poller frees it, so freed chunks are spread over several arenas
// that glibc trims only at their tops; left alone, they keep the memory of
// the largest burst resident. Elsewhere (musl) it does nothing.
static void gw_release_free_memory(void) {
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

// One fetched message, described by offsets into its batch's arena. A
// length of -1 means null; a timestamp of -1, none.
typedef struct {
	int64_t offset;
	int64_t timestamp; // milliseconds since the epoch
	int64_t topic_off, topic_len;
	int64_t key_off, key_len;
	int64_t value_off, value_len;
	int32_t partition;
	uint32_t nheaders; // the next nheaders entries of the header array
} gw_fetched;

typedef struct {
	int64_t name_off, name_len;
	int64_t value_off, value_len;
} gw_fetched_header;

// A batch of fetched messages in C memory owned by one consumer and reused
// from call to call: the arena holds every topic name, key, value, header
// name and header value back to back. event is the rebalance or commit
// result the batch stopped at, left for Go, or NULL.
typedef struct {
	char *arena;
	size_t len, cap;
	gw_fetched *msgs;
	size_t nmsgs, capmsgs;
	gw_fetched_header *hdrs;
	size_t nhdrs, caphdrs;
	int64_t topic_off, topic_len; // the last topic copied, -1 when none
	rd_kafka_event_t *event;
} gw_fetch;

// gw_grow makes room for need elements of size elem. Running out of memory
// aborts: a message taken from librdkafka cannot be put back.
static void *gw_grow(void *p, size_t *cap, size_t need, size_t elem) {
	size_t c;
	void *q;
	if (need <= *cap)
		return p;
	c = *cap ? *cap : 256;
	while (c < need)
		c *= 2;
	q = realloc(p, c * elem);
	if (q == NULL)
		abort();
	*cap = c;
	return q;
}

static int64_t gw_put(gw_fetch *f, const void *b, size_t n) {
	int64_t off = (int64_t)f->len;
	f->arena = gw_grow(f->arena, &f->cap, f->len + n, 1);
	if (n > 0)
		memcpy(f->arena + f->len, b, n);
	f->len += n;
	return off;
}

// gw_take copies one fetched message into f; a message that carries an
// error (a partition's fetch failed) becomes a client error instead.
static void gw_take(gw_state *st, gw_fetch *f, const rd_kafka_message_t *m) {
	const char *topic = m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "";
	size_t tl = strlen(topic);
	rd_kafka_timestamp_type_t tstype;
	rd_kafka_headers_t *hs = NULL;
	gw_fetched *o;
	int64_t ts;
	const char *name;
	const void *val;
	size_t size, i;
	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		char msg[600];
		snprintf(msg, sizeof msg, "%s [%d]: %s", topic, (int)m->partition, rd_kafka_err2str(m->err));
		gw_push_error(st, m->err, 0, msg);
		return;
	}
	if (f->topic_off < 0 || (size_t)f->topic_len != tl || memcmp(f->arena + f->topic_off, topic, tl) != 0) {
		f->topic_off = gw_put(f, topic, tl);
		f->topic_len = (int64_t)tl;
	}
	f->msgs = gw_grow(f->msgs, &f->capmsgs, f->nmsgs + 1, sizeof *f->msgs);
	o = &f->msgs[f->nmsgs++];
	o->offset = m->offset;
	ts = rd_kafka_message_timestamp(m, &tstype);
	o->timestamp = tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts;
	o->topic_off = f->topic_off;
	o->topic_len = f->topic_len;
	o->partition = m->partition;
	o->key_len = m->key == NULL ? -1 : (int64_t)m->key_len;
	o->key_off = m->key == NULL ? 0 : gw_put(f, m->key, m->key_len);
	o->value_len = m->payload == NULL ? -1 : (int64_t)m->len;
	o->value_off = m->payload == NULL ? 0 : gw_put(f, m->payload, m->len);
	o->nheaders = 0;
	if (rd_kafka_message_headers(m, &hs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	for (i = 0; rd_kafka_header_get_all(hs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
		gw_fetched_header *h;
		f->hdrs = gw_grow(f->hdrs, &f->caphdrs, f->nhdrs + 1, sizeof *f->hdrs);
		h = &f->hdrs[f->nhdrs++];
		h->name_len = (int64_t)strlen(name);
		h->name_off = gw_put(f, name, (size_t)h->name_len);
		h->value_len = val == NULL ? -1 : (int64_t)size;
		h->value_off = val == NULL ? 0 : gw_put(f, val, size);
		o->nheaders++;
	}
}

// gw_consume fills f from the consumer's queue: it waits up to timeout_ms
// for the first event, then takes what is already queued, until max
// messages or max_bytes of arena are taken, or it meets a rebalance or an
// offset commit result, which it leaves in f->event for Go. Errors and
// statistics are kept in st, as the producer's callbacks keep them.
static void gw_consume(gw_state *st, rd_kafka_t *rk, rd_kafka_queue_t *q, gw_fetch *f, int timeout_ms, size_t max,
                       size_t max_bytes) {
	int wait = timeout_ms;
	f->len = f->nmsgs = f->nhdrs = 0;
	f->topic_off = f->topic_len = -1;
	f->event = NULL;
	while (f->nmsgs < max && f->len < max_bytes) {
		const rd_kafka_message_t *m;
		const char *stats;
		rd_kafka_event_t *ev = rd_kafka_queue_poll(q, wait);
		if (ev == NULL)
			return;
		wait = 0;
		switch (rd_kafka_event_type(ev)) {
		case RD_KAFKA_EVENT_FETCH:
			while ((m = rd_kafka_event_message_next(ev)) != NULL)
				gw_take(st, f, m);
			break;
		case RD_KAFKA_EVENT_ERROR:
			gw_client_error_of(st, rk, rd_kafka_event_error(ev), rd_kafka_event_error_is_fatal(ev),
			                   rd_kafka_event_error_string(ev));
			break;
		case RD_KAFKA_EVENT_STATS:
			stats = rd_kafka_event_stats(ev);
			if (stats != NULL)
				gw_keep_stats(st, stats, strlen(stats));
			break;
		case RD_KAFKA_EVENT_REBALANCE:
		case RD_KAFKA_EVENT_OFFSET_COMMIT:
			f->event = ev;
			return;
		}
		rd_kafka_event_destroy(ev);
	}
}

static void gw_fetch_free(gw_fetch *f) {
	if (f->event != NULL)
		rd_kafka_event_destroy(f->event);
	free(f->arena);
	free(f->msgs);
	free(f->hdrs);
	free(f);
}

// gw_consumer_new makes a consumer as gw_new makes a producer. Rebalances,
// commit results, statistics and errors arrive as events on the consumer's
// queue (which the main queue is forwarded to), returned in *q; logs go to
// the log callback.
static rd_kafka_t *gw_consumer_new(gw_state *st, char **names, char **values, size_t n, int *bad, int *code,
                                   char *errstr, size_t errstr_size, rd_kafka_queue_t **q) {
	rd_kafka_conf_t *conf = gw_conf(names, values, n, bad, code, errstr, errstr_size);
	rd_kafka_t *rk;
	*q = NULL;
	if (conf == NULL)
		return NULL;
	rd_kafka_conf_set_opaque(conf, st);
	rd_kafka_conf_set_log_cb(conf, gw_on_log);
	rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_REBALANCE | RD_KAFKA_EVENT_OFFSET_COMMIT | RD_KAFKA_EVENT_STATS |
	                                   RD_KAFKA_EVENT_ERROR);
	rk = gw_make(RD_KAFKA_CONSUMER, conf, code, errstr, errstr_size);
	if (rk == NULL)
		return NULL;
	rd_kafka_poll_set_consumer(rk);
	*q = rd_kafka_queue_get_consumer(rk);
	return rk;
}

// One partition of a list Go builds: offsets into a Go arena (memory
// without pointers) of the NUL-terminated topic and of the metadata.
typedef struct {
	int64_t topic_off;
	int64_t offset;
	int64_t md_off, md_len; // md_len 0: no metadata
	int32_t partition;
	int32_t _unused;
} gw_tp;

static rd_kafka_topic_partition_list_t *gw_list(const char *arena, const gw_tp *tps, size_t n) {
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? (int)n : 1);
	size_t i;
	for (i = 0; i < n; i++) {
		rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_add(l, arena + tps[i].topic_off, tps[i].partition);
		p->offset = tps[i].offset;
		if (tps[i].md_len > 0) {
			// librdkafka frees the metadata with the list.
			p->metadata = malloc((size_t)tps[i].md_len);
			if (p->metadata == NULL)
				abort();
			memcpy(p->metadata, arena + tps[i].md_off, (size_t)tps[i].md_len);
			p->metadata_size = (size_t)tps[i].md_len;
		}
	}
	return l;
}

// The calls on a list that answer an rd_kafka_error_t, as a code and a
// message (destroying the error object).
enum { GW_INCR_ASSIGN = 1, GW_INCR_UNASSIGN = 2, GW_SEEK = 3, GW_CLOSE_QUEUE = 4 };

static int gw_error_call(rd_kafka_t *rk, rd_kafka_queue_t *q, int which, rd_kafka_topic_partition_list_t *l,
                         int timeout_ms, char *errstr, size_t errstr_size) {
	rd_kafka_error_t *e = NULL;
	int code;
	errstr[0] = 0;
	switch (which) {
	case GW_INCR_ASSIGN:
		e = rd_kafka_incremental_assign(rk, l);
		break;
	case GW_INCR_UNASSIGN:
		e = rd_kafka_incremental_unassign(rk, l);
		break;
	case GW_SEEK:
		e = rd_kafka_seek_partitions(rk, l, timeout_ms);
		break;
	case GW_CLOSE_QUEUE:
		e = rd_kafka_consumer_close_queue(rk, q);
		break;
	}
	if (e == NULL)
		return RD_KAFKA_RESP_ERR_NO_ERROR;
	code = rd_kafka_error_code(e);
	snprintf(errstr, errstr_size, "%s", rd_kafka_error_string(e));
	rd_kafka_error_destroy(e);
	return code;
}
*/
import "C"

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Fetched is one record a Consumer fetched. Key, Value and header values
// nil mean null; non-nil empty means empty. The bytes are the record's own
// (one allocation per record): keeping one record keeps no other.
type Fetched struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	// Timestamp is the record's (create or log-append) time; zero when the
	// record has none.
	Timestamp time.Time
}

// TopicPartition names a partition, with an offset, commit metadata and a
// per-partition error, depending on the call. Metadata "" means none.
type TopicPartition struct {
	Topic     string
	Partition int32
	Offset    int64
	Metadata  string
	Err       ErrorCode
}

// Special offsets.
const (
	OffsetBeginning = -2
	OffsetEnd       = -1
	OffsetStored    = -1000
	OffsetInvalid   = -1001
)

// EventKind is what a ConsumerEvent says.
type EventKind int

const (
	// Assigned: the group gave the consumer Partitions. The caller assigns
	// them (Assign or IncrementalAssign, by RebalanceProtocol) before
	// polling on.
	Assigned EventKind = iota + 1
	// Revoked: the group takes Partitions back; the caller unassigns them
	// (Unassign or IncrementalUnassign).
	Revoked
	// Committed: the result of an offset commit (Err, and each partition's
	// Err).
	Committed
)

// ConsumerEvent is a rebalance or a commit result, in its place among the
// fetched records.
type ConsumerEvent struct {
	Kind       EventKind
	Partitions []TopicPartition
	Err        error
}

// Consumer is a librdkafka consumer handle: group membership, fetching in
// batches of one cgo call, offsets. Only one goroutine polls; the other
// calls may come from any goroutine.
type Consumer struct {
	// mu is read-locked by every call that uses the handle and
	// write-locked by Destroy, so a call never meets a destroyed handle.
	mu sync.RWMutex
	rk *C.rd_kafka_t // nil once destroyed
	q  *C.rd_kafka_queue_t
	st *C.gw_state
	// f is the poller's batch, in C memory.
	f *C.gw_fetch
	// names interns topic names and header keys (poller only).
	names map[string]string
	// wake is Resume's waker of librdkafka's fetching threads.
	wake struct {
		mu      sync.Mutex
		pending map[TopicPartition]struct{}
		signal  chan struct{} // closed by stopWaker
		done    chan struct{} // closed when the waker has returned
		stopped atomic.Bool   // set by stopWaker; read by the waker between requests
	}
}

// Limits of one Poll.
const (
	maxFetchBytes = 4 << 20 // arena bytes per Poll (at least one record)
	maxNames      = 1024    // distinct interned topic names and header keys
)

func errConsumerClosed() error {
	return &Error{Code: ErrDestroy, Message: "rdkafka: consumer is closed"}
}

// NewConsumer creates a librdkafka consumer from string properties (the keys
// of librdkafka's CONFIGURATION.md; group.id is required). A property
// librdkafka refuses fails with an error naming it; go.* properties
// (confluent-kafka-go's) are refused. Rebalances are the caller's to apply:
// Poll returns them as events.
func NewConsumer(props map[string]string) (*Consumer, error) {
	keys := make([]string, 0, len(props))
	for k := range props {
		if strings.HasPrefix(k, "go.") {
			return nil, &Error{Code: ErrInvalidArg, Message: fmt.Sprintf("rdkafka: property %q: go.* properties are not librdkafka's and are not accepted", k)}
		}
		keys = append(keys, k)
	}
	names, values, free := cProperties(keys, props)
	defer free()
	st := C.gw_state_new()
	if st == nil {
		return nil, &Error{Code: ErrCritSysResource, Message: "rdkafka: no memory for the consumer's state"}
	}
	f := (*C.gw_fetch)(C.calloc(1, C.size_t(unsafe.Sizeof(C.gw_fetch{}))))
	if f == nil {
		C.gw_state_free(st)
		return nil, &Error{Code: ErrCritSysResource, Message: "rdkafka: no memory for the consumer's batch"}
	}
	var errstr [512]C.char
	var bad, code C.int
	var q *C.rd_kafka_queue_t
	rk := C.gw_consumer_new(st, names, values, C.size_t(len(keys)), &bad, &code, &errstr[0], C.size_t(len(errstr)), &q)
	if rk == nil {
		C.gw_fetch_free(f)
		C.gw_state_free(st)
		msg := C.GoString(&errstr[0])
		if bad >= 0 {
			return nil, &Error{Code: ErrorCode(code), Message: fmt.Sprintf("rdkafka: property %q: %s", keys[bad], msg)}
		}
		return nil, &Error{Code: ErrorCode(code), Message: "rdkafka: " + msg}
	}
	return &Consumer{rk: rk, q: q, st: st, f: f, names: make(map[string]string)}, nil
}

// Subscribe joins the group for topics.
func (c *Consumer) Subscribe(topics []string) error {
	tps := make([]TopicPartition, len(topics))
	for i, t := range topics {
		if err := checkTopic(t); err != nil {
			return err
		}
		tps[i] = TopicPartition{Topic: t, Partition: PartitionAny}
	}
	_, err := c.onList(tps, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeErr(C.rd_kafka_subscribe(c.rk, l), "subscribe")
	})
	return err
}

// Poll waits up to timeout for records, then takes those already fetched,
// up to max (and about maxFetchBytes), appending them to out in the order
// librdkafka delivers them. A rebalance or commit result ends the batch and
// is returned after the records fetched before it; the caller handles it
// before polling again. Errors and statistics are kept for Events. Only one
// goroutine polls.
func (c *Consumer) Poll(timeout time.Duration, max int, out []Fetched) ([]Fetched, *ConsumerEvent) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rk == nil {
		return out, nil
	}
	f := c.f
	C.gw_consume(c.st, c.rk, c.q, f, millis(timeout), C.size_t(max), maxFetchBytes)
	if f.nmsgs > 0 {
		out = c.copyOut(out)
		releaseFreeMemory()
	}
	if f.event == nil {
		return out, nil
	}
	ev := c.event(f.event)
	C.rd_kafka_event_destroy(f.event)
	f.event = nil
	return out, ev
}

// trimEvery is how often a consuming process gives free C memory back.
const trimEvery = 2 * time.Second

var (
	fetchedSinceTrim atomic.Bool
	startTrimmer     sync.Once
)

// releaseFreeMemory notes that records were fetched; a goroutine of the
// process (one for every consumer) gives free C heap memory back once per
// trimEvery after records were fetched, off the poll loop: a trim takes
// milliseconds when a burst left much free memory behind.
func releaseFreeMemory() {
	fetchedSinceTrim.Store(true)
	startTrimmer.Do(func() {
		go func() {
			for range time.Tick(trimEvery) {
				if fetchedSinceTrim.Swap(false) {
					C.gw_release_free_memory()
				}
			}
		}()
	})
}

// copyOut appends the batch's records to out, each copied into Go memory.
func (c *Consumer) copyOut(out []Fetched) []Fetched {
	f := c.f
	arena := unsafe.Slice((*byte)(unsafe.Pointer(f.arena)), int(f.len))
	msgs := unsafe.Slice((*C.gw_fetched)(unsafe.Pointer(f.msgs)), int(f.nmsgs))
	var hdrs []C.gw_fetched_header
	if f.nhdrs > 0 {
		hdrs = unsafe.Slice((*C.gw_fetched_header)(unsafe.Pointer(f.hdrs)), int(f.nhdrs))
	}
	bytesOf := func(off, n C.int64_t) []byte { return arena[off : off+n] }
	h := 0
	for i := range msgs {
		m := &msgs[i]
		size := max(int(m.key_len), 0) + max(int(m.value_len), 0)
		for _, hd := range hdrs[h : h+int(m.nheaders)] {
			size += max(int(hd.value_len), 0)
		}
		buf := make([]byte, 0, size)
		take := func(off, n C.int64_t) []byte {
			if n < 0 {
				return nil
			}
			start := len(buf)
			buf = append(buf, bytesOf(off, n)...)
			return buf[start:len(buf):len(buf)]
		}
		r := Fetched{
			Topic:     c.intern(bytesOf(m.topic_off, m.topic_len)),
			Partition: int32(m.partition),
			Offset:    int64(m.offset),
			Key:       take(m.key_off, m.key_len),
			Value:     take(m.value_off, m.value_len),
		}
		if m.timestamp >= 0 {
			r.Timestamp = time.UnixMilli(int64(m.timestamp))
		}
		if m.nheaders > 0 {
			r.Headers = make([]Header, m.nheaders)
			for j, hd := range hdrs[h : h+int(m.nheaders)] {
				r.Headers[j] = Header{Key: c.intern(bytesOf(hd.name_off, hd.name_len)), Value: take(hd.value_off, hd.value_len)}
			}
			h += int(m.nheaders)
		}
		out = append(out, r)
	}
	return out
}

// intern returns b as a string, shared with earlier records' equal topic
// names and header keys (they repeat) while the table has room.
func (c *Consumer) intern(b []byte) string {
	if s, ok := c.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(c.names) < maxNames {
		c.names[s] = s
	}
	return s
}

// event turns a rebalance or commit-result event into Go.
func (c *Consumer) event(ev *C.rd_kafka_event_t) *ConsumerEvent {
	code := ErrorCode(C.rd_kafka_event_error(ev))
	out := &ConsumerEvent{Partitions: fromList(C.rd_kafka_event_topic_partition_list(ev))}
	switch C.rd_kafka_event_type(ev) {
	case C.RD_KAFKA_EVENT_REBALANCE:
		out.Kind = Revoked
		if code == ErrAssignPartitions {
			out.Kind = Assigned
		}
	default:
		out.Kind = Committed
		if code != ErrNoError {
			out.Err = &Error{Code: code, Message: "rdkafka: commit: " + code.description()}
		}
	}
	return out
}

// Events returns and clears the log lines, the latest statistics document
// and the client errors (a fetch error of a partition is one) left since the
// last call, as Producer.Events does.
func (c *Consumer) Events() (logs []LogLine, stats []string, errs []ClientError) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rk == nil {
		return nil, nil, nil
	}
	return takeEvents(c.st)
}

// RebalanceProtocol is the group's: "EAGER", "COOPERATIVE", or "NONE"
// before the first assignment.
func (c *Consumer) RebalanceProtocol() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rk == nil {
		return "NONE"
	}
	return C.GoString(C.rd_kafka_rebalance_protocol(c.rk))
}

// AssignmentLost reports whether the current assignment was lost (the
// member left the group involuntarily) rather than revoked in order.
func (c *Consumer) AssignmentLost() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rk != nil && C.rd_kafka_assignment_lost(c.rk) != 0
}

// Assign replaces the whole assignment (eager protocols); Unassign clears it.
func (c *Consumer) Assign(tps []TopicPartition) error {
	_, err := c.onList(tps, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeErr(C.rd_kafka_assign(c.rk, l), "assign")
	})
	return err
}

// Unassign clears the assignment.
func (c *Consumer) Unassign() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rk == nil {
		return errConsumerClosed()
	}
	return codeErr(C.rd_kafka_assign(c.rk, nil), "unassign")
}

// IncrementalAssign adds partitions to the assignment (cooperative protocol).
func (c *Consumer) IncrementalAssign(tps []TopicPartition) error {
	return c.errorCall(C.GW_INCR_ASSIGN, tps, 0, "incremental assign")
}

// IncrementalUnassign removes partitions from the assignment.
func (c *Consumer) IncrementalUnassign(tps []TopicPartition) error {
	return c.errorCall(C.GW_INCR_UNASSIGN, tps, 0, "incremental unassign")
}

// Pause stops fetching partitions; Resume starts again.
func (c *Consumer) Pause(tps []TopicPartition) error {
	_, err := c.onList(tps, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeErr(C.rd_kafka_pause_partitions(c.rk, l), "pause")
	})
	return err
}

// Resume starts fetching paused partitions again.
//
// librdkafka applies a resume on its main thread, and the broker thread
// that fetches the partition learns of it only when something wakes that
// thread. If every partition it fetches was paused, that is its periodic
// wakeup, up to a second later (measured: 0.3-0.55 s from a resume to the
// partition's next fetch), while the caller's buffer of the partition runs
// dry. So Resume also wakes the fetching threads: off the caller's
// goroutine, it asks each resumed partition's leader for its watermarks,
// and the request and its answer wake the leader's broker thread, which
// then fetches the partition.
func (c *Consumer) Resume(tps []TopicPartition) error {
	_, err := c.onList(tps, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeErr(C.rd_kafka_resume_partitions(c.rk, l), "resume")
	})
	if err == nil {
		c.wakeFetchers(tps)
	}
	return err
}

// wakeTimeout bounds one wake-up request; Destroy may wait for one.
const wakeTimeout = 500 * time.Millisecond

// wakeFetchers has the waker goroutine (started on first use, one per
// consumer) send a watermark request for each of tps. Requests not yet
// sent are merged: a partition resumed twice meanwhile is asked once.
func (c *Consumer) wakeFetchers(tps []TopicPartition) {
	c.wake.mu.Lock()
	defer c.wake.mu.Unlock()
	if c.wake.stopped.Load() {
		return
	}
	if c.wake.pending == nil {
		c.wake.pending = make(map[TopicPartition]struct{})
		c.wake.signal = make(chan struct{}, 1)
		c.wake.done = make(chan struct{})
		go c.waker()
	}
	for _, tp := range tps {
		c.wake.pending[TopicPartition{Topic: tp.Topic, Partition: tp.Partition}] = struct{}{}
	}
	select {
	case c.wake.signal <- struct{}{}:
	default:
	}
}

func (c *Consumer) waker() {
	defer close(c.wake.done)
	var batch []TopicPartition
	for range c.wake.signal {
		c.wake.mu.Lock()
		batch = batch[:0]
		for tp := range c.wake.pending {
			batch = append(batch, tp)
		}
		clear(c.wake.pending)
		c.wake.mu.Unlock()
		for _, tp := range batch {
			if c.wake.stopped.Load() {
				return // Destroy waits for one request at most
			}
			// The answer does not matter; a failure (the consumer
			// closing, no leader) leaves the periodic wakeup.
			_, _, _ = c.watermarks(tp.Topic, tp.Partition, wakeTimeout)
		}
	}
}

// stopWaker ends the waker goroutine, waiting for a request under way.
func (c *Consumer) stopWaker() {
	c.wake.mu.Lock()
	if c.wake.stopped.Swap(true) {
		c.wake.mu.Unlock()
		return
	}
	clear(c.wake.pending)
	started := c.wake.signal != nil
	if started {
		close(c.wake.signal)
	}
	c.wake.mu.Unlock()
	if started {
		<-c.wake.done
	}
}

// StoreOffsets hands offsets (with their metadata) to the background
// commit; it returns each partition's result.
func (c *Consumer) StoreOffsets(offsets []TopicPartition) ([]TopicPartition, error) {
	return c.onList(offsets, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeErr(C.rd_kafka_offsets_store(c.rk, l), "store offsets")
	})
}

// Commit commits offsets (with their metadata) synchronously and returns
// each partition's result.
func (c *Consumer) Commit(offsets []TopicPartition) ([]TopicPartition, error) {
	return c.onList(offsets, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeErr(C.rd_kafka_commit(c.rk, l, 0), "commit")
	})
}

// Seek moves the fetch positions of assigned partitions, waiting up to
// timeout (a negative timeout waits as long as it takes, 0 not at all); it
// returns each partition's result.
func (c *Consumer) Seek(offsets []TopicPartition, timeout time.Duration) ([]TopicPartition, error) {
	var res []TopicPartition
	err := c.errorCallList(C.GW_SEEK, offsets, timeout, "seek", &res)
	return res, err
}

// CommittedOffsets asks the group coordinator for the committed offsets and
// metadata of partitions.
func (c *Consumer) CommittedOffsets(tps []TopicPartition, timeout time.Duration) ([]TopicPartition, error) {
	return c.onList(tps, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeErr(C.rd_kafka_committed(c.rk, l, millis(timeout)), "committed offsets")
	})
}

// Position returns the fetch positions (the next offset the application
// gets) of partitions, OffsetInvalid where none.
func (c *Consumer) Position(tps []TopicPartition) ([]TopicPartition, error) {
	return c.onList(tps, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeErr(C.rd_kafka_position(c.rk, l), "position")
	})
}

// OffsetsForTimes looks up, per partition, the first offset whose timestamp
// is at or after the partition's Offset (milliseconds since the epoch).
func (c *Consumer) OffsetsForTimes(tps []TopicPartition, timeout time.Duration) ([]TopicPartition, error) {
	return c.onList(tps, func(l *C.rd_kafka_topic_partition_list_t) error {
		return codeErr(C.rd_kafka_offsets_for_times(c.rk, l, millis(timeout)), "offsets for times")
	})
}

// CachedWatermarks returns the low and high watermarks librdkafka last
// learned for a partition, without asking the broker.
func (c *Consumer) CachedWatermarks(topic string, partition int32) (low, high int64, err error) {
	return c.watermarks(topic, partition, -1)
}

// QueryWatermarks asks the partition's leader for its low and high
// watermarks.
func (c *Consumer) QueryWatermarks(topic string, partition int32, timeout time.Duration) (low, high int64, err error) {
	return c.watermarks(topic, partition, timeout)
}

func (c *Consumer) watermarks(topic string, partition int32, timeout time.Duration) (low, high int64, err error) {
	if err := checkTopic(topic); err != nil {
		return 0, 0, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rk == nil {
		return 0, 0, errConsumerClosed()
	}
	ct := C.CString(topic)
	defer C.free(unsafe.Pointer(ct))
	var lo, hi C.int64_t
	var code C.rd_kafka_resp_err_t
	if timeout < 0 {
		code = C.rd_kafka_get_watermark_offsets(c.rk, ct, C.int32_t(partition), &lo, &hi)
	} else {
		code = C.rd_kafka_query_watermark_offsets(c.rk, ct, C.int32_t(partition), &lo, &hi, millis(timeout))
	}
	if err := codeErr(code, "watermarks"); err != nil {
		return 0, 0, err
	}
	return int64(lo), int64(hi), nil
}

// BeginClose starts leaving the group. The caller keeps polling, applying
// the revocation Poll returns, until Closed; then it calls Destroy.
func (c *Consumer) BeginClose() error {
	return c.errorCall(C.GW_CLOSE_QUEUE, nil, 0, "close")
}

// Closed reports whether the consumer has left the group after BeginClose.
func (c *Consumer) Closed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rk == nil || C.rd_kafka_consumer_closed(c.rk) != 0
}

// Destroy frees the handle. Called without BeginClose (or before Closed),
// librdkafka closes the consumer itself, which can block for as long as the
// group's coordinator takes.
func (c *Consumer) Destroy() {
	c.stopWaker()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rk == nil {
		return
	}
	C.rd_kafka_queue_destroy(c.q)
	C.rd_kafka_destroy(c.rk)
	C.gw_fetch_free(c.f)
	C.gw_state_free(c.st)
	c.rk, c.q, c.f, c.st = nil, nil, nil, nil
}

// onList runs call on a C list built from tps, under the read lock, and
// returns the list as the call left it.
func (c *Consumer) onList(tps []TopicPartition, call func(l *C.rd_kafka_topic_partition_list_t) error) ([]TopicPartition, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rk == nil {
		return nil, errConsumerClosed()
	}
	l, err := toList(tps)
	if err != nil {
		return nil, err
	}
	defer C.rd_kafka_topic_partition_list_destroy(l)
	err = call(l)
	return fromList(l), err
}

// errorCall runs one of gw_error_call's calls.
func (c *Consumer) errorCall(which C.int, tps []TopicPartition, timeout time.Duration, what string) error {
	return c.errorCallList(which, tps, timeout, what, nil)
}

func (c *Consumer) errorCallList(which C.int, tps []TopicPartition, timeout time.Duration, what string, res *[]TopicPartition) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.rk == nil {
		return errConsumerClosed()
	}
	var l *C.rd_kafka_topic_partition_list_t
	if which != C.GW_CLOSE_QUEUE {
		var err error
		if l, err = toList(tps); err != nil {
			return err
		}
		defer C.rd_kafka_topic_partition_list_destroy(l)
	}
	ms := millis(timeout)
	if timeout < 0 {
		ms = -1 // no timeout
	}
	var errstr [512]C.char
	code := C.gw_error_call(c.rk, c.q, which, l, ms, &errstr[0], C.size_t(len(errstr)))
	if res != nil && l != nil {
		*res = fromList(l)
	}
	if code != 0 {
		return &Error{Code: ErrorCode(code), Message: "rdkafka: " + what + ": " + C.GoString(&errstr[0])}
	}
	return nil
}

// toList builds a C list from tps: topics and metadata are packed into one
// arena of Go memory without pointers, which C copies from.
func toList(tps []TopicPartition) (*C.rd_kafka_topic_partition_list_t, error) {
	size := 0
	for _, tp := range tps {
		if err := checkTopic(tp.Topic); err != nil {
			return nil, err
		}
		size += len(tp.Topic) + 1 + len(tp.Metadata)
	}
	arena := make([]byte, 0, size+1)
	descs := make([]C.gw_tp, len(tps)+1)
	for i, tp := range tps {
		d := &descs[i]
		d.topic_off = C.int64_t(len(arena))
		arena = append(arena, tp.Topic...)
		arena = append(arena, 0)
		d.md_off, d.md_len = C.int64_t(len(arena)), C.int64_t(len(tp.Metadata))
		arena = append(arena, tp.Metadata...)
		d.partition = C.int32_t(tp.Partition)
		d.offset = C.int64_t(tp.Offset)
	}
	arena = append(arena, 0)
	return C.gw_list((*C.char)(unsafe.Pointer(&arena[0])), &descs[0], C.size_t(len(tps))), nil
}

// fromList copies a C list into Go.
func fromList(l *C.rd_kafka_topic_partition_list_t) []TopicPartition {
	if l == nil || l.cnt == 0 {
		return nil
	}
	elems := unsafe.Slice(l.elems, int(l.cnt))
	out := make([]TopicPartition, len(elems))
	for i := range elems {
		e := &elems[i]
		out[i] = TopicPartition{
			Topic:     C.GoString(e.topic),
			Partition: int32(e.partition),
			Offset:    int64(e.offset),
			Err:       ErrorCode(e.err),
		}
		if e.metadata != nil && e.metadata_size > 0 {
			out[i].Metadata = C.GoStringN((*C.char)(e.metadata), C.int(e.metadata_size))
		}
	}
	return out
}

// codeErr is nil for NO_ERROR, else an *Error naming the call.
func codeErr(code C.rd_kafka_resp_err_t, what string) error {
	if code == 0 {
		return nil
	}
	c := ErrorCode(code)
	return &Error{Code: c, Message: "rdkafka: " + what + ": " + c.description()}
}
