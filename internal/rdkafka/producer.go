package rdkafka

/*
#cgo CFLAGS: -O2 -Wall
// The hot calls neither keep a Go pointer nor call back into Go.
#cgo noescape gw_produce
#cgo nocallback gw_produce
#cgo noescape gw_poll
#cgo nocallback gw_poll
#cgo noescape gw_take_reports
#cgo nocallback gw_take_reports

#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/types.h>

#define GW_LAYOUT_FACTS
#include "api.h"
#include "state.h"

// The delivery-report callback: runs on the thread that serves the queue
// (Poll, Flush, or a thread librdkafka polls from), appends one report.
static void gw_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
	gw_state *st = opaque;
	gw_report r;
	(void)rk;
	r.opaque = (uint64_t)(uintptr_t)m->_private;
	r.partition = m->partition;
	r._unused = 0;
	r.err = m->err;
	r.offset = (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset >= 0) ? m->offset : -1;
	r.status = rd_kafka_message_status(m);
	pthread_mutex_lock(&st->mu);
	if (st->nreports == st->capreports) {
		size_t cap = st->capreports ? 2 * st->capreports : 1024;
		gw_report *grown = realloc(st->reports, cap * sizeof *grown);
		if (grown == NULL)
			abort(); // a report cannot be dropped: it is the message's only answer
		st->reports = grown;
		st->capreports = cap;
	}
	st->reports[st->nreports++] = r;
	pthread_mutex_unlock(&st->mu);
}

// gw_new sets the properties one by one (stopping at the first refused one,
// whose index it returns in *bad), installs the callbacks and makes the
// producer. names and values are arrays of n C strings.
static rd_kafka_t *gw_new(gw_state *st, char **names, char **values, size_t n, int *bad, int *code,
                          char *errstr, size_t errstr_size) {
	rd_kafka_conf_t *conf = gw_conf(names, values, n, bad, code, errstr, errstr_size);
	if (conf == NULL)
		return NULL;
	rd_kafka_conf_set_opaque(conf, st);
	rd_kafka_conf_set_dr_msg_cb(conf, gw_on_delivery);
	rd_kafka_conf_set_log_cb(conf, gw_on_log);
	rd_kafka_conf_set_stats_cb(conf, gw_on_stats);
	rd_kafka_conf_set_error_cb(conf, gw_on_error);
	return gw_make(RD_KAFKA_PRODUCER, conf, code, errstr, errstr_size);
}

static rd_kafka_topic_t *gw_topic_new(rd_kafka_t *rk, const char *name, int *code) {
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
	*code = rkt == NULL ? rd_kafka_last_error() : RD_KAFKA_RESP_ERR_NO_ERROR;
	return rkt;
}

// One message of a batch, described by offsets into the batch's arena: Go
// memory holding no pointers. A length of -1 means null.
typedef struct {
	int64_t key_off, key_len;
	int64_t value_off, value_len;
	int64_t timestamp;
	uint64_t opaque;
	int32_t partition;
	uint32_t nheaders; // the next nheaders entries of the header array
} gw_msg;

// One header: its NUL-terminated name and its value, in the arena.
typedef struct {
	int64_t name_off;
	int64_t value_off, value_len;
} gw_header;

// A non-NULL address for empty keys, values and header values: librdkafka
// tells empty (a pointer, length 0) from null (NULL).
static const char gw_empty[1] = {0};

static void *gw_bytes(const char *arena, int64_t off, int64_t len) {
	if (len < 0)
		return NULL;
	if (len == 0)
		return (void *)gw_empty;
	return (void *)(arena + off);
}

enum {
	GW_FIXED_VUS = 7, // the arguments every message has, before its headers
	GW_STACK_VUS = 64,
};

// gw_produce enqueues msgs[0:n] in order with rd_kafka_produceva, copying
// every byte. It returns how many went in; at the first refusal it stops and
// leaves the refusal's code and description in *code and errstr.
static size_t gw_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *arena, const gw_msg *msgs,
                         size_t n, const gw_header *hdrs, int *code, char *errstr, size_t errstr_size) {
	rd_kafka_vu_t stack[GW_STACK_VUS];
	rd_kafka_vu_t *vus = stack;
	size_t capvus = GW_STACK_VUS;
	size_t i, h = 0;

	*code = RD_KAFKA_RESP_ERR_NO_ERROR;
	// The arguments that are the same for every message, then the tags of
	// the ones set per message.
	vus[0].vtype = RD_KAFKA_VTYPE_RKT;
	vus[0].u.rkt = rkt;
	vus[1].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
	vus[1].u.i = RD_KAFKA_MSG_F_COPY;
	vus[2].vtype = RD_KAFKA_VTYPE_PARTITION;
	vus[3].vtype = RD_KAFKA_VTYPE_KEY;
	vus[4].vtype = RD_KAFKA_VTYPE_VALUE;
	vus[5].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
	vus[6].vtype = RD_KAFKA_VTYPE_OPAQUE;

	for (i = 0; i < n; i++) {
		const gw_msg *m = &msgs[i];
		size_t cnt = GW_FIXED_VUS + m->nheaders, j;
		rd_kafka_error_t *err;

		if (cnt > capvus) {
			rd_kafka_vu_t *grown = malloc(cnt * sizeof *grown);
			if (grown == NULL) {
				*code = RD_KAFKA_RESP_ERR__INVALID_ARG;
				snprintf(errstr, errstr_size, "no memory for %u headers", (unsigned)m->nheaders);
				break;
			}
			memcpy(grown, vus, GW_FIXED_VUS * sizeof *grown);
			if (vus != stack)
				free(vus);
			vus = grown;
			capvus = cnt;
		}
		vus[2].u.i32 = m->partition;
		vus[3].u.mem.ptr = gw_bytes(arena, m->key_off, m->key_len);
		vus[3].u.mem.size = m->key_len < 0 ? 0 : (size_t)m->key_len;
		vus[4].u.mem.ptr = gw_bytes(arena, m->value_off, m->value_len);
		vus[4].u.mem.size = m->value_len < 0 ? 0 : (size_t)m->value_len;
		vus[5].u.i64 = m->timestamp;
		vus[6].u.ptr = (void *)(uintptr_t)m->opaque;
		for (j = 0; j < m->nheaders; j++, h++) {
			rd_kafka_vu_t *v = &vus[GW_FIXED_VUS + j];
			v->vtype = RD_KAFKA_VTYPE_HEADER;
			v->u.header.name = arena + hdrs[h].name_off;
			v->u.header.val = gw_bytes(arena, hdrs[h].value_off, hdrs[h].value_len);
			v->u.header.size = hdrs[h].value_len < 0 ? 0 : (ssize_t)hdrs[h].value_len;
		}
		err = rd_kafka_produceva(rk, vus, cnt);
		if (err != NULL) {
			*code = rd_kafka_error_code(err);
			snprintf(errstr, errstr_size, "%s", rd_kafka_error_string(err));
			rd_kafka_error_destroy(err);
			break;
		}
	}
	if (vus != stack)
		free(vus);
	return i;
}

static int gw_waiting(gw_state *st) {
	int w;
	pthread_mutex_lock(&st->mu);
	w = st->nreports > 0 || st->nlogs > 0 || st->nerrors > 0 || st->stats != NULL || st->logs_dropped > 0;
	pthread_mutex_unlock(&st->mu);
	return w;
}

// gw_take_reports moves up to cap waiting reports into dst, oldest first,
// and returns how many; *left is how many still wait.
static size_t gw_take_reports(gw_state *st, gw_report *dst, size_t cap, size_t *left) {
	size_t n;
	pthread_mutex_lock(&st->mu);
	n = st->nreports < cap ? st->nreports : cap;
	if (n > 0) {
		memcpy(dst, st->reports, n * sizeof *dst);
		memmove(st->reports, st->reports + n, (st->nreports - n) * sizeof *dst);
		st->nreports -= n;
	}
	if (st->nreports == 0 && st->capreports > 65536) {
		// Give back what a burst grew.
		free(st->reports);
		st->reports = NULL;
		st->capreports = 0;
	}
	*left = st->nreports;
	pthread_mutex_unlock(&st->mu);
	return n;
}

// gw_poll serves librdkafka's callbacks (at once when something already
// waits, else for at most timeout_ms), then takes reports as
// gw_take_reports does.
static size_t gw_poll(gw_state *st, rd_kafka_t *rk, int timeout_ms, gw_report *dst, size_t cap, size_t *left) {
	rd_kafka_poll(rk, gw_waiting(st) ? 0 : timeout_ms);
	return gw_take_reports(st, dst, cap, left);
}

// gw_partitions asks for one topic's metadata and returns the call's or the
// topic's error, or NO_ERROR with the partition count in *cnt.
static rd_kafka_resp_err_t gw_partitions(rd_kafka_t *rk, const char *name, int timeout_ms, int32_t *cnt) {
	const rd_kafka_metadata_t *md = NULL;
	rd_kafka_resp_err_t err;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
	int i;
	*cnt = 0;
	if (rkt == NULL)
		return rd_kafka_last_error();
	err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	rd_kafka_topic_destroy(rkt);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return err;
	err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
	for (i = 0; i < md->topic_cnt; i++) {
		const rd_kafka_metadata_topic_t *t = &md->topics[i];
		if (t->topic == NULL || strcmp(t->topic, name) != 0)
			continue;
		err = t->err;
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (t->partition_cnt > 0)
				*cnt = t->partition_cnt;
			else
				err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
		}
		break;
	}
	rd_kafka_metadata_destroy(md);
	return err;
}

// gw_brokers asks for the cluster's brokers only (no topics) and returns the
// call's error, or NO_ERROR with the broker count in *cnt.
static rd_kafka_resp_err_t gw_brokers(rd_kafka_t *rk, int timeout_ms, int32_t *cnt) {
	const rd_kafka_metadata_t *md = NULL;
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
	*cnt = 0;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return err;
	*cnt = md->broker_cnt;
	rd_kafka_metadata_destroy(md);
	return err;
}

static int gw_flush(rd_kafka_t *rk, int timeout_ms) {
	rd_kafka_flush(rk, timeout_ms);
	return rd_kafka_outq_len(rk);
}

// gw_drain purges every message still held and serves callbacks until
// librdkafka holds nothing more, for at most timeout_ms, so the reports are
// served before the handle goes.
static void gw_drain(rd_kafka_t *rk, int timeout_ms) {
	int waited = 0;
	rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	while (rd_kafka_outq_len(rk) > 0 && waited < timeout_ms) {
		rd_kafka_poll(rk, 10);
		waited += 10;
	}
	rd_kafka_poll(rk, 0);
}
*/
import "C"

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	// The static librdkafka these declarations resolve against is linked by
	// confluent-kafka-go's package.
	_ "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Report is copied from C's gw_report as it is: the two layouts must be one
// (a mismatch is a compile error: an array length that does not match).
var (
	_ [unsafe.Sizeof(Report{})]byte             = [C.GW_REPORT_SIZE]byte{}
	_ [unsafe.Offsetof(Report{}.Opaque)]byte    = [C.GW_REPORT_OPAQUE]byte{}
	_ [unsafe.Offsetof(Report{}.Partition)]byte = [C.GW_REPORT_PARTITION]byte{}
	_ [unsafe.Offsetof(Report{}.Offset)]byte    = [C.GW_REPORT_OFFSET]byte{}
	_ [unsafe.Offsetof(Report{}.Err)]byte       = [C.GW_REPORT_ERR]byte{}
	_ [unsafe.Offsetof(Report{}.Status)]byte    = [C.GW_REPORT_STATUS]byte{}
	_ [unsafe.Sizeof(Report{}.Err)]byte         = [4]byte{}
	_ [unsafe.Sizeof(Report{}.Status)]byte      = [4]byte{}
)

// PartitionAny lets the configured partitioner choose the partition.
const PartitionAny = -1

// Message is one record to enqueue. Key and Value nil mean null (a tombstone
// value); non-nil empty means empty.
type Message struct {
	Partition  int32 // PartitionAny (-1) lets the configured partitioner choose
	Key, Value []byte
	Headers    []Header
	Timestamp  int64  // CreateTime in milliseconds since the epoch; 0: now
	Opaque     uint64 // returned in the message's delivery report
}

// Header is one record header. Value nil means a null header value. A key
// cannot hold a NUL byte (librdkafka takes it as a C string).
type Header struct {
	Key   string
	Value []byte
}

// Report is the fate of one message.
type Report struct {
	Opaque    uint64
	Partition int32
	Offset    int64     // -1 when not written
	Err       ErrorCode // 0 (ErrNoError) when the broker acknowledged the message
	// Status tells, for a failed message, whether it may nevertheless have
	// been written (PossiblyPersisted), for callers that must tell an
	// unknown fate from a definite failure.
	Status PersistStatus
}

// LogLine is one of librdkafka's log lines; Level is syslog's (0 emergency
// to 7 debug).
type LogLine struct {
	Level             int
	Facility, Message string
}

// ClientError is an error librdkafka raised outside any message (a broker
// down, all brokers down, authentication, a fatal error). Fatal ones leave
// the producer unusable; the others are informational, librdkafka retries.
type ClientError struct {
	Code    ErrorCode
	Message string
	Fatal   bool
}

// Producer is a librdkafka producer handle with the package's callbacks.
type Producer struct {
	// mu is read-locked by every call that uses the handle and write-locked
	// by Close, so a call never meets a destroyed handle.
	mu sync.RWMutex
	rk *C.rd_kafka_t // nil once closed
	st *C.gw_state   // what the callbacks collect; freed after rk

	topicsMu sync.Mutex
	topics   map[string]*C.rd_kafka_topic_t // created once per topic, destroyed by Close
}

// errClosed is what calls on a closed producer return.
func errClosed() error { return &Error{Code: ErrDestroy, Message: "rdkafka: producer is closed"} }

// NewProducer creates a librdkafka producer handle from string properties
// (the keys of librdkafka's CONFIGURATION.md). A property librdkafka refuses
// fails with an error naming the key; rd_kafka_new's own refusal (for
// example enable.idempotence with acks=1) fails with its message. The
// producer's callbacks are installed (delivery reports, logs, statistics,
// errors), so go.* properties (confluent-kafka-go's) are refused, and so is
// delivery.report.only.error=true: every message gets its report. The
// errors are *Error with Code ErrInvalidArg (or rd_kafka_new's code).
func NewProducer(props map[string]string) (*Producer, error) {
	keys := make([]string, 0, len(props))
	for k := range props {
		if strings.HasPrefix(k, "go.") {
			return nil, &Error{Code: ErrInvalidArg, Message: fmt.Sprintf("rdkafka: property %q: go.* properties are not librdkafka's and are not accepted", k)}
		}
		if k == "delivery.report.only.error" && props[k] != "false" {
			return nil, &Error{Code: ErrInvalidArg, Message: fmt.Sprintf("rdkafka: property %q: every message must get a delivery report", k)}
		}
		keys = append(keys, k)
	}
	names, values, free := cProperties(keys, props)
	defer free()
	n := len(keys)

	st := C.gw_state_new()
	if st == nil {
		return nil, &Error{Code: ErrCritSysResource, Message: "rdkafka: no memory for the producer's state"}
	}
	var errstr [512]C.char
	var bad, code C.int
	rk := C.gw_new(st, names, values, C.size_t(n), &bad, &code, &errstr[0], C.size_t(len(errstr)))
	if rk == nil {
		C.gw_state_free(st)
		msg := C.GoString(&errstr[0])
		if bad >= 0 {
			return nil, &Error{Code: ErrorCode(code), Message: fmt.Sprintf("rdkafka: property %q: %s", keys[bad], msg)}
		}
		return nil, &Error{Code: ErrorCode(code), Message: "rdkafka: " + msg}
	}
	return &Producer{rk: rk, st: st, topics: make(map[string]*C.rd_kafka_topic_t)}, nil
}

// cProperties sorts keys (so that the first refused one is the same from
// run to run) and returns them and their values as arrays of C strings, in
// C memory (Go memory passed to C may not hold pointers), with the function
// that frees them.
func cProperties(keys []string, props map[string]string) (names, values **C.char, free func()) {
	sort.Strings(keys)
	n := len(keys)
	names = (**C.char)(C.calloc(C.size_t(n+1), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	values = (**C.char)(C.calloc(C.size_t(n+1), C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	nameSlice, valueSlice := unsafe.Slice(names, n+1), unsafe.Slice(values, n+1)
	for i, k := range keys {
		nameSlice[i] = C.CString(k)
		valueSlice[i] = C.CString(props[k])
	}
	return names, values, func() {
		for i := range n {
			C.free(unsafe.Pointer(nameSlice[i]))
			C.free(unsafe.Pointer(valueSlice[i]))
		}
		C.free(unsafe.Pointer(names))
		C.free(unsafe.Pointer(values))
	}
}

// checkTopic refuses the names librdkafka must not see: an empty one (its
// threads crash on it against the in-process broker) and one with a NUL
// byte (it would be cut short).
func checkTopic(name string) error {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return &Error{Code: ErrInvalidArg, Message: fmt.Sprintf("rdkafka: invalid topic name %q", name)}
	}
	return nil
}

// topic returns the handle of topic, creating it on first use and keeping it
// until Close. Called with p.mu read-locked.
func (p *Producer) topic(name string) (*C.rd_kafka_topic_t, error) {
	if err := checkTopic(name); err != nil {
		return nil, err
	}
	p.topicsMu.Lock()
	defer p.topicsMu.Unlock()
	if rkt := p.topics[name]; rkt != nil {
		return rkt, nil
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var code C.int
	rkt := C.gw_topic_new(p.rk, cname, &code)
	if rkt == nil {
		c := ErrorCode(code)
		return nil, &Error{Code: c, Message: fmt.Sprintf("rdkafka: topic %q: %s", name, c.description())}
	}
	p.topics[name] = rkt
	return rkt, nil
}

// A batch is packed into Go memory that holds no pointers: an arena with
// every key, value, header name (NUL-terminated) and header value back to
// back, and descriptors of offsets into it. Batches are reused.
type batch struct {
	arena  []byte
	msgs   []C.gw_msg
	hdrs   []C.gw_header
	code   C.int
	errstr [256]C.char
}

// Limits of one cgo call's batch: a larger Produce is enqueued in several.
const (
	maxArenaBytes = 4 << 20  // bytes packed per call (at least one message)
	maxKeptArena  = 16 << 20 // a larger arena is not kept for reuse
)

var batches = sync.Pool{New: func() any { return new(batch) }}

// pack fills b with messages from the start of msgs and returns how many;
// when it stops at a message that cannot be enqueued (a header key with a
// NUL byte), that message's error is returned too.
func (b *batch) pack(msgs []Message) (int, error) {
	b.arena, b.msgs, b.hdrs = b.arena[:0], b.msgs[:0], b.hdrs[:0]
	for i := range msgs {
		m := &msgs[i]
		size := len(m.Key) + len(m.Value)
		for _, h := range m.Headers {
			if strings.IndexByte(h.Key, 0) >= 0 {
				return i, &Error{Code: ErrInvalidArg, Message: fmt.Sprintf("rdkafka: header key %q holds a NUL byte", h.Key)}
			}
			size += len(h.Key) + 1 + len(h.Value)
		}
		if i > 0 && len(b.arena)+size > maxArenaBytes {
			return i, nil
		}
		d := C.gw_msg{
			timestamp: C.int64_t(m.Timestamp),
			opaque:    C.uint64_t(m.Opaque),
			partition: C.int32_t(m.Partition),
			nheaders:  C.uint32_t(len(m.Headers)),
		}
		d.key_off, d.key_len = b.add(m.Key)
		d.value_off, d.value_len = b.add(m.Value)
		for _, h := range m.Headers {
			var hd C.gw_header
			hd.name_off = C.int64_t(len(b.arena))
			b.arena = append(b.arena, h.Key...)
			b.arena = append(b.arena, 0)
			hd.value_off, hd.value_len = b.add(h.Value)
			b.hdrs = append(b.hdrs, hd)
		}
		b.msgs = append(b.msgs, d)
	}
	return len(msgs), nil
}

// add appends v to the arena and returns its offset and length (-1: null).
func (b *batch) add(v []byte) (C.int64_t, C.int64_t) {
	if v == nil {
		return 0, -1
	}
	off := len(b.arena)
	b.arena = append(b.arena, v...)
	return C.int64_t(off), C.int64_t(len(v))
}

// produce enqueues the packed messages in one cgo call: how many went in, and
// the refusal that stopped it.
func (b *batch) produce(rk *C.rd_kafka_t, rkt *C.rd_kafka_topic_t) (int, error) {
	var arena *C.char
	if len(b.arena) > 0 {
		arena = (*C.char)(unsafe.Pointer(&b.arena[0]))
	}
	var hdrs *C.gw_header
	if len(b.hdrs) > 0 {
		hdrs = &b.hdrs[0]
	}
	n := int(C.gw_produce(rk, rkt, arena, &b.msgs[0], C.size_t(len(b.msgs)), hdrs,
		&b.code, &b.errstr[0], C.size_t(len(b.errstr))))
	if n < len(b.msgs) {
		return n, &Error{Code: ErrorCode(b.code), Message: C.GoString(&b.errstr[0])}
	}
	return n, nil
}

// Produce enqueues msgs to topic in order, in one cgo call (a batch of more
// than a few MiB in several), and returns how many it enqueued. It stops at
// the first message librdkafka refuses: n is its index and err its *Error
// (Code ErrQueueFull when the local queue is full: the caller waits, polls,
// and calls again with msgs[n:]; or another code, such as
// ErrUnknownPartition or ErrMsgSizeTooLarge). n == len(msgs) and err == nil
// when all went in. Every enqueued message gets exactly one delivery report.
// Safe for concurrent use.
func (p *Producer) Produce(topic string, msgs []Message) (n int, err error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.rk == nil {
		return 0, errClosed()
	}
	rkt, err := p.topic(topic)
	if err != nil {
		return 0, err
	}
	b := batches.Get().(*batch)
	defer func() {
		if cap(b.arena) <= maxKeptArena {
			batches.Put(b)
		}
	}()
	for n < len(msgs) {
		packed, packErr := b.pack(msgs[n:])
		if packed > 0 {
			done, err := b.produce(p.rk, rkt)
			n += done
			if err != nil {
				return n, err
			}
		}
		if packErr != nil {
			return n, packErr
		}
	}
	return n, nil
}

// Poll serves librdkafka's callbacks for at most timeout (returning at once
// when delivery reports, logs, statistics or errors are already waiting),
// appends every waiting delivery report to out, oldest first, and returns
// out. With room in out for them all, that is one cgo call; reusing out
// (out[:0]) makes Poll allocate nothing. Logs, statistics and client errors
// it serves are kept for Events: take them after each Poll, since Poll does
// not wait while they wait. Only one goroutine polls.
func (p *Producer) Poll(timeout time.Duration, out []Report) []Report {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.rk == nil {
		return out
	}
	var left C.size_t
	dst, room := reportRoom(out)
	n := C.gw_poll(p.st, p.rk, millis(timeout), dst, room, &left)
	out = out[:len(out)+int(n)]
	for left > 0 {
		out = slices.Grow(out, int(left))
		dst, room = reportRoom(out)
		n = C.gw_take_reports(p.st, dst, room, &left)
		out = out[:len(out)+int(n)]
	}
	return out
}

// reportRoom is the free capacity of out, as C sees it.
func reportRoom(out []Report) (*C.gw_report, C.size_t) {
	room := cap(out) - len(out)
	if room == 0 {
		return nil, 0
	}
	return (*C.gw_report)(unsafe.Pointer(&out[:cap(out)][len(out)])), C.size_t(room)
}

// Events returns and clears the log lines, statistics documents (the latest
// one only) and client errors that librdkafka's callbacks left, oldest first.
// When older log lines or errors were dropped to bound memory, a line says
// how many.
func (p *Producer) Events() (logs []LogLine, stats []string, errs []ClientError) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.rk == nil {
		return nil, nil, nil
	}
	return takeEvents(p.st)
}

// takeEvents takes what st collected: see Producer.Events.
func takeEvents(st *C.gw_state) (logs []LogLine, stats []string, errs []ClientError) {
	ev := C.gw_take_events(st)
	if ev == nil {
		return nil, nil, nil
	}
	defer C.gw_free_events(ev)
	if ev.logs_dropped > 0 {
		logs = append(logs, LogLine{Level: 4, Facility: "DROPPED", Message: fmt.Sprintf("%d older librdkafka log lines dropped", uint64(ev.logs_dropped))})
	}
	if ev.nlogs > 0 {
		for _, l := range unsafe.Slice(ev.logs, int(ev.nlogs)) {
			logs = append(logs, LogLine{Level: int(l.level), Facility: C.GoString(l.fac), Message: C.GoString(l.msg)})
		}
	}
	if ev.stats != nil {
		stats = []string{C.GoString(ev.stats)}
	}
	if ev.errors_dropped > 0 {
		logs = append(logs, LogLine{Level: 4, Facility: "DROPPED", Message: fmt.Sprintf("%d older librdkafka client errors dropped", uint64(ev.errors_dropped))})
	}
	if ev.nerrors > 0 {
		for _, e := range unsafe.Slice(ev.errors, int(ev.nerrors)) {
			errs = append(errs, ClientError{Code: ErrorCode(e.code), Message: C.GoString(e.msg), Fatal: e.fatal != 0})
		}
	}
	return logs, stats, errs
}

// Partitions asks the cluster, through this handle, for topic's partition
// count, within timeout. Its errors are *Error with the call's code (such as
// ErrTimedOut, ErrTransport) or the topic's (ErrUnknownTopicOrPart,
// ErrLeaderNotAvailable, ErrTopicAuthorizationFailed).
func (p *Producer) Partitions(topic string, timeout time.Duration) (int32, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.rk == nil {
		return 0, errClosed()
	}
	if err := checkTopic(topic); err != nil {
		return 0, err
	}
	cname := C.CString(topic)
	defer C.free(unsafe.Pointer(cname))
	var cnt C.int32_t
	if code := ErrorCode(C.gw_partitions(p.rk, cname, millis(timeout), &cnt)); code != ErrNoError {
		return 0, &Error{Code: code, Message: fmt.Sprintf("rdkafka: partitions of %q: %s", topic, code.description())}
	}
	return int32(cnt), nil
}

// Brokers asks the cluster, through this handle, for its brokers (a
// metadata request without topics) and returns how many it lists, within
// timeout. Its errors are *Error with the call's code (such as ErrTimedOut,
// ErrTransport).
func (p *Producer) Brokers(timeout time.Duration) (int, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.rk == nil {
		return 0, errClosed()
	}
	var cnt C.int32_t
	if code := ErrorCode(C.gw_brokers(p.rk, millis(timeout), &cnt)); code != ErrNoError {
		return 0, &Error{Code: code, Message: "rdkafka: brokers: " + code.description()}
	}
	return int(cnt), nil
}

// Len is the number of messages and requests librdkafka holds, delivery
// reports not yet served included (rd_kafka_outq_len).
func (p *Producer) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.rk == nil {
		return 0
	}
	return int(C.rd_kafka_outq_len(p.rk))
}

// Flush waits up to timeout for every message to be delivered, serving
// callbacks (rd_kafka_flush), and returns how many messages and requests are
// left. The reports it served are taken by Poll.
func (p *Producer) Flush(timeout time.Duration) int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.rk == nil {
		return 0
	}
	return int(C.gw_flush(p.rk, millis(timeout)))
}

// Purge fails the messages still queued and, with inFlight, those sent and
// not yet acknowledged; their reports come through Poll with ErrPurgeQueue
// (NotPersisted) or ErrPurgeInflight (PossiblyPersisted).
func (p *Producer) Purge(inFlight bool) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.rk == nil {
		return errClosed()
	}
	flags := C.int(C.RD_KAFKA_PURGE_F_QUEUE)
	if inFlight {
		flags |= C.RD_KAFKA_PURGE_F_INFLIGHT
	}
	if code := ErrorCode(C.rd_kafka_purge(p.rk, flags)); code != ErrNoError {
		return &Error{Code: code, Message: "rdkafka: purge: " + code.description()}
	}
	return nil
}

// closeDrainTimeout bounds how long Close serves callbacks after its purge.
const closeDrainTimeout = 5 * time.Second

// Close destroys the handle. It does not flush: messages still held are
// purged, their reports served and discarded, then the topic handles and the
// handle are destroyed (rd_kafka_destroy) and the C memory freed. To account
// for every message, Flush, then Purge and Poll until Len is 0, before
// Close. No other method may be called once Close has begun (they return
// at once, or fail with ErrDestroy). Idempotent.
func (p *Producer) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rk == nil {
		return
	}
	C.gw_drain(p.rk, millis(closeDrainTimeout))
	p.topicsMu.Lock()
	for name, rkt := range p.topics {
		C.rd_kafka_topic_destroy(rkt)
		delete(p.topics, name)
	}
	p.topicsMu.Unlock()
	C.rd_kafka_destroy(p.rk)
	C.gw_state_free(p.st)
	p.rk, p.st = nil, nil
}

// String is librdkafka's name for the code (rd_kafka_err2name), such as
// "_QUEUE_FULL" or "UNKNOWN_TOPIC_OR_PART".
func (c ErrorCode) String() string {
	return C.GoString(C.rd_kafka_err2name(C.rd_kafka_resp_err_t(c)))
}

// description is librdkafka's description of the code (rd_kafka_err2str).
func (c ErrorCode) description() string {
	return C.GoString(C.rd_kafka_err2str(C.rd_kafka_resp_err_t(c)))
}

// millis is d in whole milliseconds for librdkafka, rounded up, 0 for
// negative durations, capped at the largest int32.
func millis(d time.Duration) C.int {
	if d <= 0 {
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > 1<<31-1 {
		ms = 1<<31 - 1
	}
	return C.int(ms)
}

// testFatalError makes librdkafka raise a fabricated fatal error
// (rd_kafka_test_fatal_error), for tests of the error path.
func (p *Producer) testFatalError(code ErrorCode, reason string) ErrorCode {
	p.mu.RLock()
	defer p.mu.RUnlock()
	creason := C.CString(reason)
	defer C.free(unsafe.Pointer(creason))
	return ErrorCode(C.rd_kafka_test_fatal_error(p.rk, C.rd_kafka_resp_err_t(code), creason))
}

// layoutFact is one size, offset or value the preamble declares, as a C
// expression and the value the package was compiled with.
type layoutFact struct {
	Expr  string
	Value int64
}

// declaredLayout lists every size, offset and value of the preamble's
// declarations, for the test that compares them with the real header.
func declaredLayout() []layoutFact {
	n := int(C.gw_layout_fact_count())
	facts := make([]layoutFact, n)
	for i := range facts {
		f := C.gw_layout_fact(C.size_t(i))
		facts[i] = layoutFact{Expr: C.GoString(f.expr), Value: int64(f.value)}
	}
	return facts
}
