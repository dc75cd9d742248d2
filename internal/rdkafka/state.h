// What librdkafka's callbacks and events leave for Go, collected in C memory
// under a mutex: shared by the producer and the consumer.
#ifndef GW_STATE_H
#define GW_STATE_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"


// One delivery report. Go's Report has the same layout (checked at compile
// time on the Go side), so reports are copied into Go memory as they are.
typedef struct {
	uint64_t opaque;
	int32_t partition;
	int32_t _unused;
	int64_t offset;
	int32_t err;
	int32_t status;
} gw_report;

enum {
	GW_REPORT_SIZE = sizeof(gw_report),
	GW_REPORT_OPAQUE = offsetof(gw_report, opaque),
	GW_REPORT_PARTITION = offsetof(gw_report, partition),
	GW_REPORT_OFFSET = offsetof(gw_report, offset),
	GW_REPORT_ERR = offsetof(gw_report, err),
	GW_REPORT_STATUS = offsetof(gw_report, status),
};

typedef struct {
	int level;
	char *fac;
	char *msg;
} gw_log;

typedef struct {
	int code;
	int fatal;
	char *msg;
} gw_client_error;

enum {
	GW_MAX_LOGS = 4096,  // older log lines are dropped beyond this
	GW_MAX_ERRORS = 256, // older client errors are dropped beyond this
};

// What the callbacks collect until Go takes it. mu guards every field.
typedef struct {
	pthread_mutex_t mu;
	gw_report *reports;
	size_t nreports, capreports;
	gw_log logs[GW_MAX_LOGS]; // a ring: first is the oldest
	size_t logs_first, nlogs;
	uint64_t logs_dropped;
	gw_client_error errors[GW_MAX_ERRORS]; // a ring: first is the oldest
	size_t errors_first, nerrors;
	uint64_t errors_dropped;
	char *stats; // the latest statistics document only
} gw_state;

static inline gw_state *gw_state_new(void) {
	gw_state *st = calloc(1, sizeof *st);
	if (st != NULL)
		pthread_mutex_init(&st->mu, NULL);
	return st;
}

static inline void gw_state_free(gw_state *st) {
	size_t i;
	for (i = 0; i < st->nlogs; i++) {
		gw_log *l = &st->logs[(st->logs_first + i) % GW_MAX_LOGS];
		free(l->fac);
		free(l->msg);
	}
	for (i = 0; i < st->nerrors; i++)
		free(st->errors[(st->errors_first + i) % GW_MAX_ERRORS].msg);
	free(st->stats);
	free(st->reports);
	pthread_mutex_destroy(&st->mu);
	free(st);
}

static inline char *gw_strdup(const char *s) {
	size_t n = strlen(s ? s : "");
	char *d = malloc(n + 1);
	if (d != NULL) {
		memcpy(d, s ? s : "", n);
		d[n] = 0;
	}
	return d;
}

// The log callback: librdkafka calls it from its own threads too.
static inline void gw_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
	gw_state *st = rd_kafka_opaque(rk);
	gw_log l;
	if (st == NULL)
		return;
	l.level = level;
	l.fac = gw_strdup(fac);
	l.msg = gw_strdup(buf);
	if (l.fac == NULL || l.msg == NULL) {
		free(l.fac);
		free(l.msg);
		return;
	}
	pthread_mutex_lock(&st->mu);
	if (st->nlogs == GW_MAX_LOGS) {
		gw_log *old = &st->logs[st->logs_first];
		free(old->fac);
		free(old->msg);
		st->logs_first = (st->logs_first + 1) % GW_MAX_LOGS;
		st->nlogs--;
		st->logs_dropped++;
	}
	st->logs[(st->logs_first + st->nlogs) % GW_MAX_LOGS] = l;
	st->nlogs++;
	pthread_mutex_unlock(&st->mu);
}

// gw_keep_stats keeps a copy of the latest statistics document.
static inline void gw_keep_stats(gw_state *st, const char *json, size_t len) {
	char *doc = malloc(len + 1);
	if (doc == NULL)
		return;
	memcpy(doc, json, len);
	doc[len] = 0;
	pthread_mutex_lock(&st->mu);
	free(st->stats);
	st->stats = doc;
	pthread_mutex_unlock(&st->mu);
}

// The statistics callback: returning 0 lets librdkafka free its document.
static inline int gw_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
	(void)rk;
	gw_keep_stats(opaque, json, len);
	return 0;
}

// gw_push_error keeps one client error, dropping the oldest beyond
// GW_MAX_ERRORS.
static inline void gw_push_error(gw_state *st, int code, int fatal, const char *reason) {
	gw_client_error e;
	e.code = code;
	e.fatal = fatal;
	e.msg = gw_strdup(reason);
	if (e.msg == NULL)
		return;
	pthread_mutex_lock(&st->mu);
	if (st->nerrors == GW_MAX_ERRORS) {
		free(st->errors[st->errors_first].msg);
		st->errors_first = (st->errors_first + 1) % GW_MAX_ERRORS;
		st->nerrors--;
		st->errors_dropped++;
	}
	st->errors[(st->errors_first + st->nerrors) % GW_MAX_ERRORS] = e;
	st->nerrors++;
	pthread_mutex_unlock(&st->mu);
}

// gw_client_error_of keeps an error librdkafka raised; for a fatal one, the
// code that caused it is asked for.
static inline void gw_client_error_of(gw_state *st, rd_kafka_t *rk, int err, int fatal, const char *reason) {
	char buf[512];
	if (fatal || err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_resp_err_t real;
		buf[0] = 0;
		real = rd_kafka_fatal_error(rk, buf, sizeof buf);
		fatal = 1;
		if (real != RD_KAFKA_RESP_ERR_NO_ERROR) {
			err = real;
			reason = buf;
		}
	}
	gw_push_error(st, err, fatal, reason);
}

// The error callback.
static inline void gw_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
	gw_client_error_of(opaque, rk, err, 0, reason);
}

// The logs, statistics and client errors taken at once, oldest first.
typedef struct {
	gw_log *logs;
	size_t nlogs;
	uint64_t logs_dropped;
	gw_client_error *errors;
	size_t nerrors;
	uint64_t errors_dropped;
	char *stats;
} gw_events;

static inline gw_events *gw_take_events(gw_state *st) {
	gw_events *ev = calloc(1, sizeof *ev);
	size_t i;
	if (ev == NULL)
		return NULL;
	pthread_mutex_lock(&st->mu);
	if (st->nlogs > 0) {
		ev->logs = malloc(st->nlogs * sizeof *ev->logs);
		if (ev->logs != NULL) {
			for (i = 0; i < st->nlogs; i++)
				ev->logs[i] = st->logs[(st->logs_first + i) % GW_MAX_LOGS];
			ev->nlogs = st->nlogs;
			st->logs_first = 0;
			st->nlogs = 0;
		}
	}
	ev->logs_dropped = st->logs_dropped;
	st->logs_dropped = 0;
	if (st->nerrors > 0) {
		ev->errors = malloc(st->nerrors * sizeof *ev->errors);
		if (ev->errors != NULL) {
			for (i = 0; i < st->nerrors; i++)
				ev->errors[i] = st->errors[(st->errors_first + i) % GW_MAX_ERRORS];
			ev->nerrors = st->nerrors;
			st->errors_first = 0;
			st->nerrors = 0;
		}
	}
	ev->errors_dropped = st->errors_dropped;
	st->errors_dropped = 0;
	ev->stats = st->stats;
	st->stats = NULL;
	pthread_mutex_unlock(&st->mu);
	return ev;
}

static inline void gw_free_events(gw_events *ev) {
	size_t i;
	for (i = 0; i < ev->nlogs; i++) {
		free(ev->logs[i].fac);
		free(ev->logs[i].msg);
	}
	for (i = 0; i < ev->nerrors; i++)
		free(ev->errors[i].msg);
	free(ev->logs);
	free(ev->errors);
	free(ev->stats);
	free(ev);
}

// gw_conf makes a configuration from n properties (arrays of C strings),
// set one by one; at the first one librdkafka refuses it returns NULL, with
// the property's index in *bad and librdkafka's message in errstr.
static inline rd_kafka_conf_t *gw_conf(char **names, char **values, size_t n, int *bad, int *code, char *errstr,
                                       size_t errstr_size) {
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	size_t i;
	*bad = -1;
	*code = RD_KAFKA_RESP_ERR_NO_ERROR;
	errstr[0] = 0;
	for (i = 0; i < n; i++) {
		if (rd_kafka_conf_set(conf, names[i], values[i], errstr, errstr_size) != RD_KAFKA_CONF_OK) {
			*bad = (int)i;
			*code = RD_KAFKA_RESP_ERR__INVALID_ARG;
			rd_kafka_conf_destroy(conf);
			return NULL;
		}
	}
	return conf;
}

// gw_make makes a handle of the given type from conf, which it takes (on
// failure, rd_kafka_new leaves conf to its caller, and gw_make frees it).
static inline rd_kafka_t *gw_make(rd_kafka_type_t type, rd_kafka_conf_t *conf, int *code, char *errstr,
                                  size_t errstr_size) {
	rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, errstr_size);
	if (rk == NULL) {
		*code = rd_kafka_last_error();
		if (*code == RD_KAFKA_RESP_ERR_NO_ERROR)
			*code = RD_KAFKA_RESP_ERR__INVALID_ARG;
		rd_kafka_conf_destroy(conf);
	}
	return rk;
}

#endif // GW_STATE_H
