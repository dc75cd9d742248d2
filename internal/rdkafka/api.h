// The part of librdkafka's public C API the package calls, declared in the
// package's own words (it does not include rdkafka.h), with static asserts on
// every size, offset and value; TestDeclaredLayoutMatchesTheVendoredHeader
// compares the same facts with the real header.
#ifndef GW_API_H
#define GW_API_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

// ---------------------------------------------------------------------------
// The part of librdkafka's public C API this package calls, declared here in
// the package's own words. The layout test compiles the expressions of
// gw_layout_facts below against the real header and compares the results.
// ---------------------------------------------------------------------------

// Handles librdkafka allocates and the package only passes back.
typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_topic_conf_s rd_kafka_topic_conf_t;
typedef struct rd_kafka_error_s rd_kafka_error_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;

// Error codes: the library's enum holds many more; these are the ones the C
// side of the package names. The Go side has its own ErrorCode constants.
typedef enum {
	RD_KAFKA_RESP_ERR__INVALID_ARG = -186,
	RD_KAFKA_RESP_ERR__FATAL = -150,
	RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS = -175,
	RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS = -174,
	RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART = 3,
	RD_KAFKA_RESP_ERR_NO_ERROR = 0
} rd_kafka_resp_err_t;

// The kind of client rd_kafka_new makes.
typedef enum {
	RD_KAFKA_PRODUCER = 0,
	RD_KAFKA_CONSUMER = 1
} rd_kafka_type_t;

// rd_kafka_conf_set's answer.
typedef enum {
	RD_KAFKA_CONF_OK = 0
} rd_kafka_conf_res_t;

// What rd_kafka_message_status says about a reported message.
typedef enum {
	RD_KAFKA_MSG_STATUS_NOT_PERSISTED = 0,
	RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED = 1,
	RD_KAFKA_MSG_STATUS_PERSISTED = 2
} rd_kafka_msg_status_t;

// The tag of one rd_kafka_vu_t argument of rd_kafka_produceva.
typedef enum {
	RD_KAFKA_VTYPE_RKT = 2,       // u.rkt: the topic handle
	RD_KAFKA_VTYPE_PARTITION = 3, // u.i32
	RD_KAFKA_VTYPE_VALUE = 4,     // u.mem: value bytes and length
	RD_KAFKA_VTYPE_KEY = 5,       // u.mem: key bytes and length
	RD_KAFKA_VTYPE_OPAQUE = 6,    // u.ptr: the message's opaque
	RD_KAFKA_VTYPE_MSGFLAGS = 7,  // u.i: RD_KAFKA_MSG_F_* flags
	RD_KAFKA_VTYPE_TIMESTAMP = 8, // u.i64: milliseconds since the epoch, 0 for now
	RD_KAFKA_VTYPE_HEADER = 9     // u.header: NUL-terminated name, value, length
} rd_kafka_vtype_t;

// Message flag: librdkafka copies key, value and headers before returning.
#define RD_KAFKA_MSG_F_COPY 0x2
// rd_kafka_purge flags: messages still queued, and messages in flight.
#define RD_KAFKA_PURGE_F_QUEUE 0x1
#define RD_KAFKA_PURGE_F_INFLIGHT 0x2

// One tagged argument of rd_kafka_produceva: the tag says which member of
// the union holds the value. The union is padded to 64 bytes by the library.
typedef struct rd_kafka_vu_s {
	rd_kafka_vtype_t vtype;
	union {
		const char *cstr;
		rd_kafka_topic_t *rkt;
		int i;
		int32_t i32;
		int64_t i64;
		struct {
			void *ptr;
			size_t size;
		} mem;
		struct {
			const char *name;
			const void *val;
			ssize_t size;
		} header;
		rd_kafka_headers_t *headers;
		void *ptr;
		char _pad[64];
	} u;
} rd_kafka_vu_t;

// A message as a delivery report shows it. For a producer, _private is the
// opaque given with the message, and offset is where it was written.
typedef struct rd_kafka_message_s {
	rd_kafka_resp_err_t err;
	rd_kafka_topic_t *rkt;
	int32_t partition;
	void *payload;
	size_t len;
	void *key;
	size_t key_len;
	int64_t offset;
	void *_private;
} rd_kafka_message_t;

// A metadata answer. Only the topic list is read; brokers and partitions are
// left opaque.
struct rd_kafka_metadata_broker;
struct rd_kafka_metadata_partition;

typedef struct rd_kafka_metadata_topic {
	char *topic;
	int partition_cnt;
	struct rd_kafka_metadata_partition *partitions;
	rd_kafka_resp_err_t err;
} rd_kafka_metadata_topic_t;

typedef struct rd_kafka_metadata {
	int broker_cnt;
	struct rd_kafka_metadata_broker *brokers;
	int topic_cnt;
	struct rd_kafka_metadata_topic *topics;
	int32_t orig_broker_id;
	char *orig_broker_name;
} rd_kafka_metadata_t;

// The functions.
extern rd_kafka_conf_t *rd_kafka_conf_new(void);
extern void rd_kafka_conf_destroy(rd_kafka_conf_t *conf);
extern rd_kafka_conf_res_t rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
	char *errstr, size_t errstr_size);
extern void rd_kafka_conf_set_opaque(rd_kafka_conf_t *conf, void *opaque);
extern void rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *conf,
	void (*cb)(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque));
extern void rd_kafka_conf_set_log_cb(rd_kafka_conf_t *conf,
	void (*cb)(const rd_kafka_t *rk, int level, const char *fac, const char *buf));
extern void rd_kafka_conf_set_stats_cb(rd_kafka_conf_t *conf,
	int (*cb)(rd_kafka_t *rk, char *json, size_t json_len, void *opaque));
extern void rd_kafka_conf_set_error_cb(rd_kafka_conf_t *conf,
	void (*cb)(rd_kafka_t *rk, int err, const char *reason, void *opaque));
extern rd_kafka_t *rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);
extern void rd_kafka_destroy(rd_kafka_t *rk);
extern void *rd_kafka_opaque(const rd_kafka_t *rk);
extern rd_kafka_resp_err_t rd_kafka_last_error(void);
extern const char *rd_kafka_err2str(rd_kafka_resp_err_t err);
extern const char *rd_kafka_err2name(rd_kafka_resp_err_t err);
extern rd_kafka_resp_err_t rd_kafka_fatal_error(rd_kafka_t *rk, char *errstr, size_t errstr_size);
extern rd_kafka_resp_err_t rd_kafka_test_fatal_error(rd_kafka_t *rk, rd_kafka_resp_err_t err, const char *reason);
extern rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic, rd_kafka_topic_conf_t *conf);
extern void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);
extern rd_kafka_error_t *rd_kafka_produceva(rd_kafka_t *rk, const rd_kafka_vu_t *vus, size_t cnt);
extern rd_kafka_resp_err_t rd_kafka_error_code(const rd_kafka_error_t *error);
extern const char *rd_kafka_error_string(const rd_kafka_error_t *error);
extern void rd_kafka_error_destroy(rd_kafka_error_t *error);
extern rd_kafka_msg_status_t rd_kafka_message_status(const rd_kafka_message_t *msg);
extern int rd_kafka_poll(rd_kafka_t *rk, int timeout_ms);
extern rd_kafka_resp_err_t rd_kafka_flush(rd_kafka_t *rk, int timeout_ms);
extern rd_kafka_resp_err_t rd_kafka_purge(rd_kafka_t *rk, int purge_flags);
extern int rd_kafka_outq_len(rd_kafka_t *rk);
extern rd_kafka_resp_err_t rd_kafka_metadata(rd_kafka_t *rk, int all_topics, rd_kafka_topic_t *only_rkt,
	const struct rd_kafka_metadata **metadatap, int timeout_ms);
extern void rd_kafka_metadata_destroy(const struct rd_kafka_metadata *metadata);

// The numbers of librdkafka 2.11.1 (LP64): a declaration above that drifts
// from them does not compile. The layout test checks the same expressions
// against the header itself.
_Static_assert(sizeof(void *) == 8, "64-bit targets only: an opaque is carried in a pointer");
_Static_assert(sizeof(rd_kafka_resp_err_t) == 4, "rd_kafka_resp_err_t size");
_Static_assert(sizeof(rd_kafka_vtype_t) == 4, "rd_kafka_vtype_t size");
_Static_assert(RD_KAFKA_RESP_ERR_NO_ERROR == 0, "NO_ERROR");
_Static_assert(RD_KAFKA_RESP_ERR__INVALID_ARG == -186, "__INVALID_ARG");
_Static_assert(RD_KAFKA_RESP_ERR__FATAL == -150, "__FATAL");
_Static_assert(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART == 3, "UNKNOWN_TOPIC_OR_PART");
_Static_assert(RD_KAFKA_PRODUCER == 0, "RD_KAFKA_PRODUCER");
_Static_assert(RD_KAFKA_CONF_OK == 0, "RD_KAFKA_CONF_OK");
_Static_assert(RD_KAFKA_MSG_STATUS_NOT_PERSISTED == 0, "MSG_STATUS_NOT_PERSISTED");
_Static_assert(RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED == 1, "MSG_STATUS_POSSIBLY_PERSISTED");
_Static_assert(RD_KAFKA_MSG_STATUS_PERSISTED == 2, "MSG_STATUS_PERSISTED");
_Static_assert(RD_KAFKA_VTYPE_RKT == 2 && RD_KAFKA_VTYPE_PARTITION == 3 && RD_KAFKA_VTYPE_VALUE == 4 &&
	RD_KAFKA_VTYPE_KEY == 5 && RD_KAFKA_VTYPE_OPAQUE == 6 && RD_KAFKA_VTYPE_MSGFLAGS == 7 &&
	RD_KAFKA_VTYPE_TIMESTAMP == 8 && RD_KAFKA_VTYPE_HEADER == 9, "RD_KAFKA_VTYPE_*");
_Static_assert(RD_KAFKA_MSG_F_COPY == 2, "RD_KAFKA_MSG_F_COPY");
_Static_assert(RD_KAFKA_PURGE_F_QUEUE == 1 && RD_KAFKA_PURGE_F_INFLIGHT == 2, "RD_KAFKA_PURGE_F_*");
_Static_assert(sizeof(rd_kafka_vu_t) == 72, "rd_kafka_vu_t size");
_Static_assert(offsetof(rd_kafka_vu_t, vtype) == 0, "rd_kafka_vu_t.vtype");
_Static_assert(offsetof(rd_kafka_vu_t, u) == 8, "rd_kafka_vu_t.u");
_Static_assert(sizeof(((rd_kafka_vu_t *)0)->u) == 64, "rd_kafka_vu_t.u size");
_Static_assert(offsetof(rd_kafka_vu_t, u.mem.ptr) == 8 && offsetof(rd_kafka_vu_t, u.mem.size) == 16, "rd_kafka_vu_t.u.mem");
_Static_assert(offsetof(rd_kafka_vu_t, u.header.name) == 8 && offsetof(rd_kafka_vu_t, u.header.val) == 16 &&
	offsetof(rd_kafka_vu_t, u.header.size) == 24, "rd_kafka_vu_t.u.header");
_Static_assert(sizeof(rd_kafka_message_t) == 72, "rd_kafka_message_t size");
_Static_assert(offsetof(rd_kafka_message_t, err) == 0, "rd_kafka_message_t.err");
_Static_assert(offsetof(rd_kafka_message_t, rkt) == 8, "rd_kafka_message_t.rkt");
_Static_assert(offsetof(rd_kafka_message_t, partition) == 16, "rd_kafka_message_t.partition");
_Static_assert(offsetof(rd_kafka_message_t, payload) == 24, "rd_kafka_message_t.payload");
_Static_assert(offsetof(rd_kafka_message_t, len) == 32, "rd_kafka_message_t.len");
_Static_assert(offsetof(rd_kafka_message_t, key) == 40, "rd_kafka_message_t.key");
_Static_assert(offsetof(rd_kafka_message_t, key_len) == 48, "rd_kafka_message_t.key_len");
_Static_assert(offsetof(rd_kafka_message_t, offset) == 56, "rd_kafka_message_t.offset");
_Static_assert(offsetof(rd_kafka_message_t, _private) == 64, "rd_kafka_message_t._private");
_Static_assert(sizeof(rd_kafka_metadata_topic_t) == 32, "rd_kafka_metadata_topic_t size");
_Static_assert(offsetof(rd_kafka_metadata_topic_t, topic) == 0, "rd_kafka_metadata_topic_t.topic");
_Static_assert(offsetof(rd_kafka_metadata_topic_t, partition_cnt) == 8, "rd_kafka_metadata_topic_t.partition_cnt");
_Static_assert(offsetof(rd_kafka_metadata_topic_t, partitions) == 16, "rd_kafka_metadata_topic_t.partitions");
_Static_assert(offsetof(rd_kafka_metadata_topic_t, err) == 24, "rd_kafka_metadata_topic_t.err");
_Static_assert(sizeof(rd_kafka_metadata_t) == 48, "rd_kafka_metadata_t size");
_Static_assert(offsetof(rd_kafka_metadata_t, broker_cnt) == 0, "rd_kafka_metadata_t.broker_cnt");
_Static_assert(offsetof(rd_kafka_metadata_t, brokers) == 8, "rd_kafka_metadata_t.brokers");
_Static_assert(offsetof(rd_kafka_metadata_t, topic_cnt) == 16, "rd_kafka_metadata_t.topic_cnt");
_Static_assert(offsetof(rd_kafka_metadata_t, topics) == 24, "rd_kafka_metadata_t.topics");
_Static_assert(offsetof(rd_kafka_metadata_t, orig_broker_id) == 32, "rd_kafka_metadata_t.orig_broker_id");
_Static_assert(offsetof(rd_kafka_metadata_t, orig_broker_name) == 40, "rd_kafka_metadata_t.orig_broker_name");


// ---------------------------------------------------------------------------
// The consumer's part of the API.
// ---------------------------------------------------------------------------

typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_op_s rd_kafka_event_t;

// What an event is; only the kinds a consumer's queue carries are named.
typedef int rd_kafka_event_type_t;
#define RD_KAFKA_EVENT_FETCH 0x2
#define RD_KAFKA_EVENT_ERROR 0x8
#define RD_KAFKA_EVENT_REBALANCE 0x10
#define RD_KAFKA_EVENT_OFFSET_COMMIT 0x20
#define RD_KAFKA_EVENT_STATS 0x40

// How a fetched message's timestamp was set.
typedef enum {
	RD_KAFKA_TIMESTAMP_NOT_AVAILABLE = 0,
	RD_KAFKA_TIMESTAMP_CREATE_TIME = 1,
	RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME = 2
} rd_kafka_timestamp_type_t;

// One partition of a list: its offset, the commit metadata (bytes librdkafka
// frees with the list) and a per-partition error, depending on the call.
// _private belongs to the library: zero, never copied.
typedef struct rd_kafka_topic_partition_s {
	char *topic;
	int32_t partition;
	int64_t offset;
	void *metadata;
	size_t metadata_size;
	void *opaque;
	rd_kafka_resp_err_t err;
	void *_private;
} rd_kafka_topic_partition_t;

typedef struct rd_kafka_topic_partition_list_s {
	int cnt;
	int size;
	rd_kafka_topic_partition_t *elems;
} rd_kafka_topic_partition_list_t;

extern void rd_kafka_conf_set_events(rd_kafka_conf_t *conf, int events);
extern rd_kafka_resp_err_t rd_kafka_poll_set_consumer(rd_kafka_t *rk);
extern rd_kafka_queue_t *rd_kafka_queue_get_consumer(rd_kafka_t *rk);
extern void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu);
extern rd_kafka_event_t *rd_kafka_queue_poll(rd_kafka_queue_t *rkqu, int timeout_ms);
extern rd_kafka_event_type_t rd_kafka_event_type(const rd_kafka_event_t *rkev);
extern const rd_kafka_message_t *rd_kafka_event_message_next(rd_kafka_event_t *rkev);
extern void rd_kafka_event_destroy(rd_kafka_event_t *rkev);
extern rd_kafka_resp_err_t rd_kafka_event_error(rd_kafka_event_t *rkev);
extern const char *rd_kafka_event_error_string(rd_kafka_event_t *rkev);
extern int rd_kafka_event_error_is_fatal(rd_kafka_event_t *rkev);
extern const char *rd_kafka_event_stats(rd_kafka_event_t *rkev);
extern rd_kafka_topic_partition_list_t *rd_kafka_event_topic_partition_list(rd_kafka_event_t *rkev);
extern rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(int size);
extern rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_add(rd_kafka_topic_partition_list_t *rktparlist,
	const char *topic, int32_t partition);
extern void rd_kafka_topic_partition_list_destroy(rd_kafka_topic_partition_list_t *rkparlist);
extern rd_kafka_resp_err_t rd_kafka_subscribe(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *topics);
extern rd_kafka_resp_err_t rd_kafka_assign(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *partitions);
extern rd_kafka_error_t *rd_kafka_incremental_assign(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *partitions);
extern rd_kafka_error_t *rd_kafka_incremental_unassign(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *partitions);
extern const char *rd_kafka_rebalance_protocol(rd_kafka_t *rk);
extern int rd_kafka_assignment_lost(rd_kafka_t *rk);
extern rd_kafka_resp_err_t rd_kafka_pause_partitions(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions);
extern rd_kafka_resp_err_t rd_kafka_resume_partitions(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions);
extern rd_kafka_resp_err_t rd_kafka_offsets_store(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *offsets);
extern rd_kafka_resp_err_t rd_kafka_commit(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *offsets, int async);
extern rd_kafka_error_t *rd_kafka_seek_partitions(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions, int timeout_ms);
extern rd_kafka_resp_err_t rd_kafka_committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions, int timeout_ms);
extern rd_kafka_resp_err_t rd_kafka_position(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions);
extern rd_kafka_resp_err_t rd_kafka_get_watermark_offsets(rd_kafka_t *rk, const char *topic, int32_t partition,
	int64_t *low, int64_t *high);
extern rd_kafka_resp_err_t rd_kafka_query_watermark_offsets(rd_kafka_t *rk, const char *topic, int32_t partition,
	int64_t *low, int64_t *high, int timeout_ms);
extern rd_kafka_resp_err_t rd_kafka_offsets_for_times(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *offsets, int timeout_ms);
extern rd_kafka_error_t *rd_kafka_consumer_close_queue(rd_kafka_t *rk, rd_kafka_queue_t *rkqu);
extern int rd_kafka_consumer_closed(rd_kafka_t *rk);
extern const char *rd_kafka_topic_name(const rd_kafka_topic_t *rkt);
extern int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *rkmessage, rd_kafka_timestamp_type_t *tstype);
extern rd_kafka_resp_err_t rd_kafka_message_headers(const rd_kafka_message_t *rkmessage, rd_kafka_headers_t **hdrsp);
extern rd_kafka_resp_err_t rd_kafka_header_get_all(const rd_kafka_headers_t *hdrs, size_t idx, const char **namep,
	const void **valuep, size_t *sizep);

_Static_assert(RD_KAFKA_CONSUMER == 1, "RD_KAFKA_CONSUMER");
_Static_assert(RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS == -175 && RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS == -174,
	"__ASSIGN_PARTITIONS, __REVOKE_PARTITIONS");
_Static_assert(RD_KAFKA_EVENT_FETCH == 0x2 && RD_KAFKA_EVENT_ERROR == 0x8 && RD_KAFKA_EVENT_REBALANCE == 0x10 &&
	RD_KAFKA_EVENT_OFFSET_COMMIT == 0x20 && RD_KAFKA_EVENT_STATS == 0x40, "RD_KAFKA_EVENT_*");
_Static_assert(sizeof(rd_kafka_event_type_t) == 4, "rd_kafka_event_type_t size");
_Static_assert(sizeof(rd_kafka_timestamp_type_t) == 4 && RD_KAFKA_TIMESTAMP_NOT_AVAILABLE == 0 &&
	RD_KAFKA_TIMESTAMP_CREATE_TIME == 1 && RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME == 2, "rd_kafka_timestamp_type_t");
_Static_assert(sizeof(rd_kafka_topic_partition_t) == 64, "rd_kafka_topic_partition_t size");
_Static_assert(offsetof(rd_kafka_topic_partition_t, topic) == 0 && offsetof(rd_kafka_topic_partition_t, partition) == 8 &&
	offsetof(rd_kafka_topic_partition_t, offset) == 16 && offsetof(rd_kafka_topic_partition_t, metadata) == 24 &&
	offsetof(rd_kafka_topic_partition_t, metadata_size) == 32 && offsetof(rd_kafka_topic_partition_t, opaque) == 40 &&
	offsetof(rd_kafka_topic_partition_t, err) == 48 && offsetof(rd_kafka_topic_partition_t, _private) == 56,
	"rd_kafka_topic_partition_t fields");
_Static_assert(sizeof(rd_kafka_topic_partition_list_t) == 16 && offsetof(rd_kafka_topic_partition_list_t, cnt) == 0 &&
	offsetof(rd_kafka_topic_partition_list_t, size) == 4 && offsetof(rd_kafka_topic_partition_list_t, elems) == 8,
	"rd_kafka_topic_partition_list_t");

#ifdef GW_LAYOUT_FACTS
// Every declared size, offset and value, as a C expression valid against both
// the declarations above and the real header, with its value here.
typedef struct {
	const char *expr;
	long long value;
} gw_fact;

#define GW_FACT(e) { #e, (long long)(e) }

static const gw_fact gw_layout_facts[] = {
	GW_FACT(sizeof(rd_kafka_resp_err_t)),
	GW_FACT(sizeof(rd_kafka_vtype_t)),
	GW_FACT(RD_KAFKA_RESP_ERR_NO_ERROR),
	GW_FACT(RD_KAFKA_RESP_ERR__INVALID_ARG),
	GW_FACT(RD_KAFKA_RESP_ERR__FATAL),
	GW_FACT(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART),
	GW_FACT(RD_KAFKA_PRODUCER),
	GW_FACT(RD_KAFKA_CONF_OK),
	GW_FACT(RD_KAFKA_MSG_STATUS_NOT_PERSISTED),
	GW_FACT(RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED),
	GW_FACT(RD_KAFKA_MSG_STATUS_PERSISTED),
	GW_FACT(RD_KAFKA_VTYPE_RKT),
	GW_FACT(RD_KAFKA_VTYPE_PARTITION),
	GW_FACT(RD_KAFKA_VTYPE_VALUE),
	GW_FACT(RD_KAFKA_VTYPE_KEY),
	GW_FACT(RD_KAFKA_VTYPE_OPAQUE),
	GW_FACT(RD_KAFKA_VTYPE_MSGFLAGS),
	GW_FACT(RD_KAFKA_VTYPE_TIMESTAMP),
	GW_FACT(RD_KAFKA_VTYPE_HEADER),
	GW_FACT(RD_KAFKA_MSG_F_COPY),
	GW_FACT(RD_KAFKA_PURGE_F_QUEUE),
	GW_FACT(RD_KAFKA_PURGE_F_INFLIGHT),
	GW_FACT(sizeof(rd_kafka_vu_t)),
	GW_FACT(offsetof(rd_kafka_vu_t, vtype)),
	GW_FACT(offsetof(rd_kafka_vu_t, u)),
	GW_FACT(sizeof(((rd_kafka_vu_t *)0)->u)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.rkt)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.i)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.i32)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.i64)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.ptr)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.mem.ptr)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.mem.size)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.header.name)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.header.val)),
	GW_FACT(offsetof(rd_kafka_vu_t, u.header.size)),
	GW_FACT(sizeof(rd_kafka_message_t)),
	GW_FACT(offsetof(rd_kafka_message_t, err)),
	GW_FACT(offsetof(rd_kafka_message_t, rkt)),
	GW_FACT(offsetof(rd_kafka_message_t, partition)),
	GW_FACT(offsetof(rd_kafka_message_t, payload)),
	GW_FACT(offsetof(rd_kafka_message_t, len)),
	GW_FACT(offsetof(rd_kafka_message_t, key)),
	GW_FACT(offsetof(rd_kafka_message_t, key_len)),
	GW_FACT(offsetof(rd_kafka_message_t, offset)),
	GW_FACT(offsetof(rd_kafka_message_t, _private)),
	GW_FACT(sizeof(rd_kafka_metadata_topic_t)),
	GW_FACT(offsetof(rd_kafka_metadata_topic_t, topic)),
	GW_FACT(offsetof(rd_kafka_metadata_topic_t, partition_cnt)),
	GW_FACT(offsetof(rd_kafka_metadata_topic_t, partitions)),
	GW_FACT(offsetof(rd_kafka_metadata_topic_t, err)),
	GW_FACT(sizeof(rd_kafka_metadata_t)),
	GW_FACT(offsetof(rd_kafka_metadata_t, broker_cnt)),
	GW_FACT(offsetof(rd_kafka_metadata_t, brokers)),
	GW_FACT(offsetof(rd_kafka_metadata_t, topic_cnt)),
	GW_FACT(offsetof(rd_kafka_metadata_t, topics)),
	GW_FACT(offsetof(rd_kafka_metadata_t, orig_broker_id)),
	GW_FACT(offsetof(rd_kafka_metadata_t, orig_broker_name)),
	GW_FACT(RD_KAFKA_CONSUMER),
	GW_FACT(RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS),
	GW_FACT(RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS),
	GW_FACT(RD_KAFKA_EVENT_FETCH),
	GW_FACT(RD_KAFKA_EVENT_ERROR),
	GW_FACT(RD_KAFKA_EVENT_REBALANCE),
	GW_FACT(RD_KAFKA_EVENT_OFFSET_COMMIT),
	GW_FACT(RD_KAFKA_EVENT_STATS),
	GW_FACT(sizeof(rd_kafka_event_type_t)),
	GW_FACT(sizeof(rd_kafka_timestamp_type_t)),
	GW_FACT(RD_KAFKA_TIMESTAMP_NOT_AVAILABLE),
	GW_FACT(RD_KAFKA_TIMESTAMP_CREATE_TIME),
	GW_FACT(RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME),
	GW_FACT(sizeof(rd_kafka_topic_partition_t)),
	GW_FACT(offsetof(rd_kafka_topic_partition_t, topic)),
	GW_FACT(offsetof(rd_kafka_topic_partition_t, partition)),
	GW_FACT(offsetof(rd_kafka_topic_partition_t, offset)),
	GW_FACT(offsetof(rd_kafka_topic_partition_t, metadata)),
	GW_FACT(offsetof(rd_kafka_topic_partition_t, metadata_size)),
	GW_FACT(offsetof(rd_kafka_topic_partition_t, opaque)),
	GW_FACT(offsetof(rd_kafka_topic_partition_t, err)),
	GW_FACT(offsetof(rd_kafka_topic_partition_t, _private)),
	GW_FACT(sizeof(rd_kafka_topic_partition_list_t)),
	GW_FACT(offsetof(rd_kafka_topic_partition_list_t, cnt)),
	GW_FACT(offsetof(rd_kafka_topic_partition_list_t, size)),
	GW_FACT(offsetof(rd_kafka_topic_partition_list_t, elems)),
};

static size_t gw_layout_fact_count(void) { return sizeof gw_layout_facts / sizeof gw_layout_facts[0]; }
static const gw_fact *gw_layout_fact(size_t i) { return &gw_layout_facts[i]; }
#endif // GW_LAYOUT_FACTS

#endif // GW_API_H
